"""What stream and datagram transports share: the socket they own, the write
queue's size and water marks, and how they end.

:class:`BaseTransport` is asyncio's ``_SelectorTransport`` for fastmux:
``stream.StreamTransport`` and ``datagram.DatagramTransport`` add what
differs (reading, the shape of the write queue, connecting).  Ending goes
one way for both: ``_force_close`` marks the transport lost, drops what is
queued (``_discard_writes``) and unregisters the fd; ``connection_lost``
runs on the next iteration (``_call_connection_lost``), then ``_release``
gives the fd back and closes the socket.  ``Reactor.close()`` calls
``_close_now`` instead, which runs that pending ``connection_lost`` at once.

Compiled into ``_transport_c`` (typed by ``src/fastmux/reactor/_transport_c.pxd``),
this class is the cdef base of the compiled twins' transports, and the loop
dispatches to it (``_on_io``) as a C call.
"""
from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

from ._errors import is_quiet
if cython.compiled:  # the compiled handles, which the loop reads in C
    from ._handles_c import Handle
else:
    from .handles import Handle

if not cython.compiled and TYPE_CHECKING:  # compiled, _transport_c.pxd cimports Reactor
    import socket

    from .loop import Reactor

__all__ = ["BaseTransport", "DEFAULT_HIGH_WATER"]

logger = logging.getLogger("fastmux.reactor")

DEFAULT_HIGH_WATER = 64 * 1024


class BaseTransport:
    """The part of a transport that does not depend on what it carries."""

    __slots__ = (
        "_loop", "_watch", "_sock", "_fd", "_protocol", "_events", "_wq", "_wsize", "_high", "_low",
        "_proto_paused", "_closing", "_conn_lost", "_made", "_sock_gone", "_io_requeued", "_lost_handle",
        "__weakref__",
    )

    def __init__(self, loop: Reactor, protocol: Any) -> None:
        self._loop = loop
        self._watch = loop._watch
        self._protocol = protocol
        self._sock: Optional[socket.socket] = None
        self._fd = -1
        self._events = 0  # what the selector watches for us (0: not registered)
        self._wq: Optional[Deque[Any]] = None  # the write queue: see _queue
        self._wsize = 0  # bytes queued in memory
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._proto_paused = False
        self._closing = False
        self._conn_lost = False
        self._made = False  # connection_made was called: connection_lost will be
        self._sock_gone = False  # the fd was closed behind our back: never close the number
        self._io_requeued = False
        self._lost_handle: Optional[Handle] = None

    def _queue(self) -> Deque[Any]:
        """The write queue, made when something is first queued: most connections
        never queue, and an empty deque costs 600 bytes per connection and a
        cache line per write.  Read ``_wq`` for "anything queued?" (None is)."""
        wq = self._wq
        if wq is None:
            wq = self._wq = collections.deque()
        return wq

    def _own(self, sock: socket.socket) -> None:
        """Take ``sock`` (connected or bound, non-blocking): the loop's owner of its fd."""
        self._sock = sock
        self._fd = fd = sock.fileno()
        self._loop._owners[fd] = self

    # -- what each kind of transport does its own way -------------------------------

    def _on_io(self, mask: int) -> None:
        """The selector reported ``mask`` for our fd."""
        raise NotImplementedError

    def _update(self) -> None:
        """Make the selector's interest match what we want."""
        raise NotImplementedError

    # -- the shared API -----------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, flush what is queued, then close; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._update()
        if not self._wq:
            self._force_close(None)

    def abort(self) -> None:
        """Close now, dropping what is queued; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> Any:
        return self._protocol

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Set the marks for ``pause_writing`` (above ``high``) and ``resume_writing`` (at ``low``)."""
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        if self._wsize > high and not self._proto_paused:
            self._pause_protocol()
        elif self._proto_paused and self._wsize <= low:
            self._resume_protocol()

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        return (self._low, self._high)

    @property
    def _protocol_paused(self) -> bool:
        """asyncio's name for ``_proto_paused`` (3.9/3.10's TLS transport reads it
        from the transport under it to decide whether sendfile must wait)."""
        return self._proto_paused

    def get_write_buffer_size(self) -> int:
        """Bytes queued in memory (a stream's pending ``sendfile`` ranges are not: they are files)."""
        return self._wsize

    # -- flow control and errors -----------------------------------------------------------

    def _pause_protocol(self) -> None:
        self._proto_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._loop.call_exception_handler({"message": "protocol.pause_writing() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    def _resume_protocol(self) -> None:
        self._proto_paused = False
        try:
            self._protocol.resume_writing()
        except Exception as exc:
            self._loop.call_exception_handler({"message": "protocol.resume_writing() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    def _fatal_error(self, exc: BaseException, where: str) -> None:
        """``where`` failed with ``exc``: report it (quietly if the peer just went away) and close."""
        if is_quiet(exc):
            logger.debug("%r: %s failed: %r", self, where, exc)
        else:
            self._loop.call_exception_handler({"message": f"Fatal error on transport ({where})", "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _io_lost(self, exc: OSError) -> None:
        """The fd was closed behind our back: forget the registration, never close the number."""
        self._events = 0
        self._sock_gone = True
        self._fatal_error(exc, "fd lost")

    # -- ending ------------------------------------------------------------------------------

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._conn_lost = True
        self._closing = True
        self._discard_writes()
        if self._events:
            self._events = 0
            self._watch.unregister(self._fd)
        h = self._lost_handle = Handle(self._call_connection_lost, (exc,))
        self._loop._ready.append(h)

    def _discard_writes(self) -> None:
        """Drop what is queued: nothing more will be sent."""
        if self._wq:
            self._wq.clear()
        self._wsize = 0

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        self._lost_handle = None
        try:
            if self._made:
                self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        """Give the fd back to the loop and close the socket (detach it if the fd was lost)."""
        sock = self._sock
        if sock is not None:
            owners = self._loop._owners
            if owners.get(self._fd) is self:
                del owners[self._fd]
            if self._sock_gone:
                sock.detach()
            else:
                sock.close()
        self._protocol = None

    def _close_now(self) -> None:
        """Reactor.close(): abort and run connection_lost at once (the loop will not run again)."""
        if not self._conn_lost:
            self._force_close(None)
        h = self._lost_handle
        if h is not None and not h._cancelled:
            args = h._args
            h.cancel()
            try:
                self._call_connection_lost(*args)  # type: ignore[misc]
            except Exception as err:
                self._loop.call_exception_handler({"message": "connection_lost() failed during close",
                                                   "exception": err, "transport": self})
