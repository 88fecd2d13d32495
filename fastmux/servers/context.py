"""What one server process shares between its connections.

``ServeContext`` bundles the loop (``Runtime``), the live-connection set used
by graceful shutdown, and the worker pools (``pools.py``), with
``offload(...)`` delivering a pool's result back on the loop thread.  The
upload server sends its fsync and rename work to the thread pool; the menu
server's ``{"call": ...}`` entries run in either pool (see ``menu.py``).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from ._runtime import Runtime
from .pools import Pools
from .shutdown import Connections

__all__ = ["ServeContext"]


class ServeContext:
    """Per-process state shared by a server's connections."""

    def __init__(self, runtime: Runtime, conns: Optional[Connections] = None,
                 pools: Optional[Pools] = None) -> None:
        self.runtime = runtime
        self.conns = conns if conns is not None else Connections()
        self.pools = pools if pools is not None else Pools()
        self._closers: List[Callable[[], None]] = []

    def offload(self, pool: str, func: Callable[..., Any], *args: Any,
                done: Callable[[Any], None]) -> None:
        """Run ``func(*args)`` in the ``"thread"`` or ``"process"`` pool;
        ``done(future)`` is called on the loop thread."""
        self.runtime.offload(self.pools.get(pool), func, *args, done=done)

    def at_close(self, func: Callable[[], None]) -> None:
        """Run ``func()`` in ``close()``, after the pools have finished their work."""
        self._closers.append(func)

    def close(self) -> None:
        self.pools.close()
        while self._closers:
            self._closers.pop()()
