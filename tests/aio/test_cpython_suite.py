"""CPython's own test_asyncio modules pass on ``fastmux.asyncio.new_event_loop()``.

Each module runs through ``cpython_suite`` (a fresh interpreter per module, the
loop factory swapped in). Every failure must be allowlisted in
``cpython_expected_failures``; the allowlisted ones that fail are reported as a
warning, so they stay visible in the summary.
"""
from __future__ import annotations

import asyncio
import fnmatch
import importlib
import unittest
import warnings
from typing import Any, Dict

import pytest

import cpython_expected_failures
import cpython_suite


def _run(module: str, loop: str) -> Dict[str, Any]:
    return cpython_suite.run_module(module, cpython_suite.parse_args(["--loop", loop, "-q"]))


@pytest.mark.filterwarnings("always:CPython test_asyncio:UserWarning")
@pytest.mark.parametrize("module", cpython_suite.available_modules())
def test_cpython_asyncio_module(module: str) -> None:
    result = _run(module, "fastmux")
    assert result["run"] > 0, result
    allowed: Dict[str, str] = {}
    unexpected: Dict[str, str] = {}
    for test_id, reason in result["failing"].items():
        why = cpython_expected_failures.reason(test_id)
        if why is None:
            unexpected[test_id] = reason
        else:
            allowed[test_id] = why
    assert not unexpected, f"{len(unexpected)} of {result['run']} tests failed:\n" + "\n".join(
        f"{t}: {r}" for t, r in sorted(unexpected.items())
    )
    if allowed:
        warnings.warn(
            f"CPython test_asyncio: {len(allowed)} allowlisted failures in {module}:\n"
            + "\n".join(f"{t}: {r}" for t, r in sorted(allowed.items())),
            UserWarning,
        )


class _MarkedLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, except that serving fails in a recognisable way."""

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the swapped-in loop")

    create_unix_server = create_server


def marked_loop() -> asyncio.AbstractEventLoop:
    return _MarkedLoop()


def test_harness_swaps_the_loop_in() -> None:
    """The tests really run on the factory's loop: test_server's tests, which build
    ``asyncio.SelectorEventLoop()`` themselves, meet the marked loop's error."""
    result = _run("test_server", f"{__name__}:marked_loop")
    assert result["failing"], result
    assert all("the swapped-in loop" in r for r in result["failing"].values()), result["failing"]


def test_harness_swap_alone_breaks_nothing() -> None:
    """asyncio's own loop passes as well through the swap as without it."""
    direct, swapped = _run("test_server", "stdlib"), _run("test_server", "asyncio:SelectorEventLoop")
    assert swapped["failing"] == direct["failing"] == {}
    assert swapped["passed"] == direct["passed"] > 0


def test_allowlist_names_existing_tests() -> None:
    """Every allowlist glob matches a test of this Python (a renamed test would
    otherwise leave a stale entry that silently allows nothing)."""
    loader = unittest.defaultTestLoader
    ids = []
    for module in cpython_suite.available_modules():
        suite = loader.loadTestsFromModule(importlib.import_module(f"test.test_asyncio.{module}"))
        ids += [t.id() for t in cpython_suite.iter_tests(suite)]
    available = set(cpython_suite.available_modules())
    stale = [
        pattern for pattern in cpython_expected_failures.expected_failures()
        if pattern.split(".")[2] in available and not fnmatch.filter(ids, pattern)
    ]
    assert not stale, stale
