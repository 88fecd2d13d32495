"""CPython test_asyncio tests that a loop other than asyncio's own need not pass.

Each entry is a test id glob (``fnmatch``; ``*EventLoopTests`` covers the
Select/Poll/EPoll variants) mapped to why: the test checks an implementation
detail of asyncio's own loop rather than a public API, and
``fastmux.asyncio.new_event_loop()`` fails it for that reason (the entries
are exactly its failures; tests that patch private internals it shares with
asyncio's loop, such as ``_run_once`` or ``_sendfile_native``, pass and are
not listed).  A failure for a public-API reason never belongs here.

Not here, though private: ``test_asyncio.utils.TestCase.close_loop`` reads
``loop._default_executor`` after every test, so a loop must have that attribute
(None, or the executor ``run_in_executor`` made) for most tests to pass at all.
"""
from __future__ import annotations

import fnmatch
import sys
from typing import Dict, Optional, Tuple

_T = "test.test_asyncio."

# Every Python version that has the test.
_NOT_A_SUBCLASS = ("asserts isinstance(transport, asyncio.Transport): fastmux's transports are the "
                   "reactor's compiled types, which cannot derive from asyncio.Transport (its "
                   "__slots__ layout is one no C type can share); they implement its interface")
ALL_VERSIONS: Dict[str, str] = {
    _T + "test_events.*EventLoopTests.test_create_connection": _NOT_A_SUBCLASS,
    _T + "test_events.*EventLoopTests.test_create_unix_connection": _NOT_A_SUBCLASS,
    _T + "test_sock_lowlevel.*EventLoopTests.test_create_connection_sock": _NOT_A_SUBCLASS,
}

# Only these (major, minor) versions.
BY_VERSION: Dict[Tuple[int, int], Dict[str, str]] = {
    (3, 13): {
        _T + "test_runners.RunTests.test_loop_factory_default_event_loop":
            "asserts that asyncio.EventLoop (the swapped-in factory) builds a SelectorEventLoop",
    },
}


def expected_failures(version: Tuple[int, int] = sys.version_info[:2]) -> Dict[str, str]:
    """Test id glob -> reason, for one Python version."""
    return {**ALL_VERSIONS, **BY_VERSION.get(version, {})}


def reason(test_id: str, version: Tuple[int, int] = sys.version_info[:2]) -> Optional[str]:
    """Why ``test_id`` may fail on a non-stdlib loop, or None if it must pass."""
    for pattern, why in expected_failures(version).items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return why
    return None
