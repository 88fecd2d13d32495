"""CPython test_asyncio tests that a loop other than asyncio's own need not pass.

Each entry is a test id glob (``fnmatch``; ``*EventLoopTests`` covers the
Select/Poll/EPoll variants) mapped to why: the test patches or inspects the
stdlib loop's private internals (``_run_once``, ``_selector``,
``_ssl_protocol``, ...) rather than a public API. A failure for a public-API
reason never belongs here. Each was checked against the source of 3.9 to 3.13
and fails on uvloop for that reason; a loop that keeps the internal in question
may pass it.

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
ALL_VERSIONS: Dict[str, str] = {
    _T + "test_events.*EventLoopTests.test_timeout_rounding":
        "wraps loop._run_once to count iterations; reads loop._selector and loop._clock_resolution",
    _T + "test_events.*EventLoopTests.test_prompt_cancellation":
        "cleans up with loop._stop_serving(sock), a selector loop's private method",
    _T + "test_events.*EventLoopTests.test_create_server_multiple_hosts_ipv*":
        "mocks asyncio.base_events.socket and replaces loop._start_serving/_stop_serving",
    _T + "test_sendfile.*EventLoopTests.test_sendfile_force_fallback":
        "replaces loop._sendfile_native with BaseEventLoop._sendfile_native",
    _T + "test_sendfile.*EventLoopTests.test_sendfile_force_unsupported_native":
        "replaces loop._sendfile_native with BaseEventLoop._sendfile_native",
    _T + "test_sendfile.*EventLoopTests.test_sendfile_fallback_close_peer_in_the_middle_of_receiving":
        "replaces loop._sendfile_native with BaseEventLoop._sendfile_native",
    _T + "test_sendfile.*EventLoopTests.test_sendfile_no_fallback_for_fallback_transport":
        "sets the private transport._sendfile_compatible that BaseEventLoop.sendfile reads",
    _T + "test_ssl.TestSSL.test_flush_before_shutdown":
        "reads writer.transport._ssl_protocol and drives asyncio.sslproto's private state",
    _T + "test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data":
        "calls writer.transport._test__append_write_backlog, a hook of asyncio.sslproto",
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
