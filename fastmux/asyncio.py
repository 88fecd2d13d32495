"""fastmux for asyncio programs, in one line.

``new_event_loop()`` returns :class:`fastmux.reactor.aioloop.EventLoop`: an
``asyncio`` event loop that is fastmux's compiled reactor (its iteration,
callbacks, timers, fd dispatch and stream transports) under asyncio's own
API, so protocols, streams, servers, TLS, subprocesses and executors work
unchanged::

    import fastmux.asyncio

    fastmux.asyncio.run(main())            # instead of asyncio.run(main())
    loop = fastmux.asyncio.new_event_loop()  # instead of asyncio.new_event_loop()
    fastmux.asyncio.install()              # every new loop, via the policy

``new_selector_event_loop()`` is the lighter touch: asyncio's own
``SelectorEventLoop`` with only the readiness polling moved onto
``fastmux.selectors``.

``EventLoopPolicy`` is created on first use: asyncio's policy classes are
deprecated from Python 3.14, and importing this module must not warn.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Optional, TypeVar

__all__ = ["new_event_loop", "new_selector_event_loop", "run", "install", "EventLoopPolicy"]

_T = TypeVar("_T")


def new_selector_event_loop() -> asyncio.AbstractEventLoop:
    """A new ``asyncio.SelectorEventLoop`` over ``fastmux.selectors.DefaultSelector()``."""
    from . import selectors

    return asyncio.SelectorEventLoop(selectors.DefaultSelector())


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new :class:`fastmux.reactor.aioloop.EventLoop`: asyncio's API on the compiled reactor."""
    from .reactor.aioloop import EventLoop

    return EventLoop()


def run(main: Awaitable[_T], *, debug: Optional[bool] = None) -> _T:
    """``asyncio.run(main)`` on a fastmux-backed loop."""
    # Checked before a Runner exists: inside a running loop, closing that Runner would
    # fail too (its loop cannot run there) and hide this error behind its own.
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("fastmux.asyncio.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_legacy(main, debug)  # pragma: no cover - 3.9/3.10


def _run_legacy(main: Awaitable[_T], debug: Optional[bool]) -> _T:  # pragma: no cover - 3.9/3.10
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _make_policy_class() -> type:
    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,valid-type]
        """asyncio's default policy, whose new loops are fastmux's (``new_event_loop()``)."""

        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return new_event_loop()

    EventLoopPolicy.__module__ = __name__
    return EventLoopPolicy


_policy_class: Optional[type] = None


def __getattr__(name: str) -> Any:
    global _policy_class
    if name == "EventLoopPolicy":
        if _policy_class is None:
            _policy_class = _make_policy_class()
        return _policy_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install() -> None:
    """Make every loop asyncio creates from now on a fastmux-backed one (sets the policy)."""
    asyncio.set_event_loop_policy(__getattr__("EventLoopPolicy")())
