"""Graceful shutdown: stop accepting, let in-flight work finish, then close.

The first SIGINT or SIGTERM closes every listening socket and asks each live
connection to ``shutdown()``: finish what it is doing and close (an echo
connection flushes and closes; a menu connection says goodbye; an upload in
progress completes and commits its file).  When the last connection is gone,
or when the grace period runs out (then every connection is ``abort()``-ed,
and an unfinished upload deletes its temporary file), the loop stops and the
process exits 0.  A second signal skips the wait.

Connections register themselves in a ``Connections`` set in
``connection_made`` and leave it in ``connection_lost``: once per connection,
nothing per request.
"""
from __future__ import annotations

import logging
import signal
from typing import Any, Callable, List, Optional, Set

from ._runtime import Runtime

log = logging.getLogger("fastmux.servers")


class Connections:
    """The live connections of one server process."""

    __slots__ = ("_live", "draining", "_on_empty")

    def __init__(self) -> None:
        self._live: Set[Any] = set()
        self.draining = False
        self._on_empty: Optional[Callable[[], None]] = None

    def add(self, conn: Any) -> None:
        self._live.add(conn)
        if self.draining:  # accepted just before the listener closed
            conn.shutdown()

    def discard(self, conn: Any) -> None:
        self._live.discard(conn)
        if not self._live and self._on_empty is not None:
            on_empty, self._on_empty = self._on_empty, None
            on_empty()

    def __len__(self) -> int:
        return len(self._live)

    def drain(self, on_empty: Callable[[], None]) -> None:
        """Ask every connection to finish; ``on_empty()`` once none is left."""
        self.draining = True
        self._on_empty = on_empty
        for conn in list(self._live):
            conn.shutdown()
        if not self._live and self._on_empty is not None:
            self._on_empty = None
            on_empty()

    def abort_all(self) -> None:
        self._on_empty = None
        for conn in list(self._live):
            conn.abort()
        self._live.clear()


class GracefulShutdown:
    """Runs the shutdown sequence described in the module docstring."""

    def __init__(self, runtime: Runtime, conns: Connections, grace: float) -> None:
        self.runtime = runtime
        self.conns = conns
        self.grace = grace
        self.listeners: List[Any] = []  # objects with close(): servers, datagram transports
        self.requested = False
        self.forced_by: Optional[str] = None  # why the grace period was cut short, if it was
        self._timer: Any = None
        self._stopped = False

    def install(self, signals=(signal.SIGINT, signal.SIGTERM)) -> None:
        for sig in signals:
            self.runtime.add_signal_handler(sig, self.request, sig)

    def request(self, signum: Optional[int] = None) -> None:
        if self.requested:
            self.force("a second signal")
            return
        self.requested = True
        name = signal.Signals(signum).name if signum else "request"
        log.info("%s: shutting down, %d connection(s) open, grace %.1fs", name, len(self.conns), self.grace)
        for listener in self.listeners:
            listener.close()
        self._timer = self.runtime.call_later(self.grace, self.force, "the end of the grace period")
        self.conns.drain(self._finish)

    def force(self, why: str) -> None:
        if self._stopped:
            return
        self.forced_by = why
        if len(self.conns):
            log.warning("forced by %s: closing %d connection(s) now", why, len(self.conns))
        self.conns.abort_all()
        self._finish()

    def _finish(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        # Stop one turn later, so connection_lost callbacks queued by the
        # closes above still run.
        self.runtime.call_soon(self.runtime.stop)
