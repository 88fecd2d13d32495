"""Fixtures of the asyncio-face suite.

``no_leaks``: every descriptor a test opened is closed by its end, and
nothing it left to the garbage collector warned (an unclosed socket,
transport or loop).  ``loop``: a new ``fastmux.asyncio.new_event_loop()``
(the twin that ``fastmux.reactor.IMPLEMENTATION`` names), closed at
teardown, under ``no_leaks``; what reaches its exception handler is
recorded in ``loop.errors``, and a test that expects errors takes them
out: teardown fails on any left over.
"""
from __future__ import annotations

import gc
import os
import warnings
from typing import Any, Dict, Iterator, List

import pytest

import fastmux.asyncio as fasyncio


def _open_fds() -> Dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed meanwhile
            pass
    return fds


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Every descriptor the test opened is closed, and nothing it left to the
    garbage collector warns (an unclosed socket, transport or loop)."""
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    resource_warnings = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not resource_warnings
    left = {fd: target for fd, target in _open_fds().items() if before.get(fd) != target}
    assert not left, f"descriptors left open: {left}"


@pytest.fixture
def loop(no_leaks: None) -> Iterator[Any]:
    """fastmux's asyncio loop, recording what reaches its exception handler in ``loop.errors``."""
    loop = fasyncio.new_event_loop()
    errors: List[Dict[str, Any]] = []
    loop.errors = errors  # type: ignore[attr-defined]
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield loop
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    assert not errors, f"unexpected errors reported to the exception handler: {errors}"
