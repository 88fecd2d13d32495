"""CPython test_asyncio tests that a loop other than asyncio's own cannot pass.

Each entry is a test id glob (``fnmatch``: ``*EventLoopTests`` covers the
Select/Poll/EPoll variants of test_events) mapped to why: the test patches or
inspects asyncio's private loop internals (``_run_once``, ``_selector``,
``_ssl_protocol``, ...) rather than a public API. A failure for a public-API
reason never belongs here.
"""
from __future__ import annotations

import fnmatch
import sys
from typing import Dict, Optional, Tuple

_E = "test.test_asyncio.test_events."

# Every Python version that has the test.
ALL_VERSIONS: Dict[str, str] = {}

# Only these (major, minor) versions.
BY_VERSION: Dict[Tuple[int, int], Dict[str, str]] = {}


def expected_failures(version: Tuple[int, int] = sys.version_info[:2]) -> Dict[str, str]:
    """Test id glob -> reason, for one Python version."""
    return {**ALL_VERSIONS, **BY_VERSION.get(version, {})}


def reason(test_id: str, version: Tuple[int, int] = sys.version_info[:2]) -> Optional[str]:
    """Why ``test_id`` may fail on a non-stdlib loop, or None if it must pass."""
    for pattern, why in expected_failures(version).items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return why
    return None
