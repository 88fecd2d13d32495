"""CPython's own ``test_selectors``, run against ``fastmux.selectors``.

The running Python's ``Lib/test/test_selectors.py`` is the reference for a
drop-in: each of its selector test cases is subclassed here with
``SELECTOR`` set to fastmux's class, for every implementation (compiled and
pure twin).  It tests the stdlib's public behaviour, including that a
selector instance takes attributes (``test_modify`` mocks ``s.register``)."""
from __future__ import annotations

import importlib
import unittest

import pytest

from fastmux._impl import implementations

stdlib_tests = pytest.importorskip(
    "test.test_selectors", reason="this Python ships without its test package (Lib/test)")

_CASES = {
    "EpollSelector": stdlib_tests.EpollSelectorTestCase,
    "PollSelector": stdlib_tests.PollSelectorTestCase,
    "SelectSelector": stdlib_tests.SelectSelectorTestCase,
}


def _skip_modify_unregister(self: unittest.TestCase) -> None:
    self.skipTest("patches the stdlib's private EpollSelector/PollSelector._selector_cls, "
                  "and expects the registration dropped when the kernel refuses a modify: "
                  "fastmux keeps it (a documented difference, see test_epoll_flags.py:test_failed_modify_leaves_consistent_state)")


for _impl in implementations("fastmux._selectors_c"):
    _mod = importlib.import_module(f"fastmux._selectors_{_impl}")
    for _name, _case in _CASES.items():
        _cls_name = f"Test{_impl.upper()}{_name}"
        globals()[_cls_name] = type(_cls_name, (_case,), {
            "SELECTOR": getattr(_mod, _name),
            "test_modify_unregister": _skip_modify_unregister,
            "__module__": __name__,
        })
del _impl, _mod, _name, _case, _cls_name
