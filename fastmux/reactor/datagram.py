"""Datagram endpoints: ``create_datagram_endpoint`` and :class:`DatagramTransport`.

Reading takes up to ``DGRAM_BUDGET`` datagrams per wake-up (one ``epoll_wait``
amortised over a burst; then the other fds get their turn).
Level-triggered, the kernel reports the rest next iteration;
edge-triggered, the endpoint drains to EAGAIN under that budget and
re-queues itself, like stream transports (see the essay in ``loop.py``).

``sendto`` sends at once and queues only when the socket buffer is full
(the queue is flushed in order when the socket is writable, with the same
high/low water marks and ``pause_writing``/``resume_writing`` as streams).

Errors: ICMP-driven errors (connection refused on a connected socket, an
unreachable host...) and send errors go to ``protocol.error_received(exc)``
and the endpoint stays open.  A protocol whose ``datagram_received`` raises
is reported through the exception handler and the endpoint stays open too:
it is shared by all peers, and one bad datagram should not end it.
"""
from __future__ import annotations

import collections
import logging
import socket
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from ._errors import is_quiet
from ._fdwatch import EPOLLET, EVENT_READ, EVENT_WRITE
from .handles import Handle

__all__ = ["DatagramTransport", "create_datagram_endpoint"]

logger = logging.getLogger("fastmux.reactor")

DGRAM_BUDGET = 32
MAX_DGRAM = 65536 + 256
DEFAULT_HIGH_WATER = 64 * 1024


class DatagramTransport:
    """A UDP or Unix datagram socket."""

    __slots__ = (
        "_loop", "_watch", "_sock", "_fd", "_protocol", "_datagram_received", "_address", "_extra", "_events",
        "_wq", "_wsize", "_high", "_low", "_proto_paused", "_closing", "_conn_lost", "_made", "_sock_gone",
        "_io_requeued", "_edge", "_lost_handle", "__weakref__",
    )

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any, address: Any = None) -> None:
        self._loop = loop
        self._watch = loop._watch
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._datagram_received: Any = None
        self._address = address  # the connected peer, if any
        self._extra: Optional[Dict[str, Any]] = None
        self._events = 0
        self._wq: Deque[Tuple[bytes, Any]] = collections.deque()
        self._wsize = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._proto_paused = False
        self._closing = False
        self._conn_lost = False
        self._made = False
        self._sock_gone = False
        self._io_requeued = False
        self._edge = loop._edge
        self._lost_handle: Optional[Handle] = None
        loop._owners[self._fd] = self

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else "open")
        return f"<DatagramTransport fd={self._fd} {state}>"

    # -- lifecycle -------------------------------------------------------------------

    def _start(self) -> None:
        if self._conn_lost:
            return
        self._made = True
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._loop.call_exception_handler({"message": "protocol.connection_made() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})
            self._force_close(exc)
            return
        if self._conn_lost:
            return
        self._datagram_received = self._protocol.datagram_received
        self._update()

    def _update(self) -> None:
        if self._conn_lost:
            return
        if self._edge:
            if not self._events:
                self._events = EVENT_READ | EVENT_WRITE
                self._register(self._watch.register, EPOLLET)
            return
        ev = (0 if self._closing else EVENT_READ) | (EVENT_WRITE if self._wq else 0)
        old = self._events
        if ev == old:
            return
        self._events = ev
        if old == 0:
            self._register(self._watch.register, 0)
        elif ev == 0:
            self._watch.unregister(self._fd)
        else:
            try:
                self._watch.modify(self._fd, ev, self)
            except OSError as exc:
                self._events = 0
                self._fatal_error(exc)

    def _register(self, register: Callable[..., Any], flags: int) -> None:
        try:
            register(self._fd, self._events, self, flags)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc)

    # -- I/O -------------------------------------------------------------------------

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ and not self._io_requeued and not self._closing and self._made:
            self._read_some()
        if mask & EVENT_WRITE and self._wq:
            self._write_ready()

    def _io_retry(self) -> None:
        self._io_requeued = False
        if not self._closing and not self._conn_lost:
            self._read_some()

    def _read_some(self) -> None:
        recvfrom = self._sock.recvfrom
        for _ in range(DGRAM_BUDGET):
            if self._closing:
                return
            try:
                data, addr = recvfrom(MAX_DGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if is_quiet(exc):  # an ICMP error queued on the socket: tell, and go on
                    self._error_received(exc)
                    continue
                self._fatal_error(exc)
                return
            try:
                self._datagram_received(data, addr)
            except Exception as exc:
                self._loop.call_exception_handler({"message": "protocol.datagram_received() failed",
                                                   "exception": exc, "transport": self,
                                                   "protocol": self._protocol})
        if self._edge:
            self._loop._requeue_io(self)  # budget spent: the kernel will not remind us

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (or to the connected peer)."""
        if data.__class__ is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}")
            data = bytes(data)
        if self._address is not None and addr is not None and addr != self._address:
            raise ValueError(f"Invalid address: must be None or {self._address!r}")
        if self._conn_lost or self._closing:
            return
        if not self._wq:
            try:
                if addr is None or self._address is not None:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._error_received(exc)
                return
        self._wq.append((data, addr))
        self._wsize += len(data)
        self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._proto_paused = True
            self._call_protocol("pause_writing")

    def _write_ready(self) -> None:
        wq = self._wq
        sock = self._sock
        while wq:
            data, addr = wq[0]
            try:
                if addr is None or self._address is not None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                wq.popleft()
                self._wsize -= len(data)
                self._error_received(exc)
                if self._conn_lost:
                    return
                continue
            wq.popleft()
            self._wsize -= len(data)
        if self._proto_paused and self._wsize <= self._low:
            self._proto_paused = False
            self._call_protocol("resume_writing")
        if not wq:
            if self._closing:
                self._force_close(None)
            else:
                self._update()

    def _error_received(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception as err:
            self._loop.call_exception_handler({"message": "protocol.error_received() failed", "exception": err,
                                               "transport": self, "protocol": self._protocol})

    def _call_protocol(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except Exception as exc:
            self._loop.call_exception_handler({"message": f"protocol.{name}() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    # -- the rest of the API -----------------------------------------------------------

    def close(self) -> None:
        """Stop receiving, send what is queued, then close; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._update()
        if not self._wq:
            self._force_close(None)

    def abort(self) -> None:
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self._wsize

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        return (self._low, self._high)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        if self._made:
            self._datagram_received = protocol.datagram_received

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'`` (the connected address), ``'sockname'``, ``'socket'``."""
        if name == "socket":
            return self._sock if not self._conn_lost else default
        if name == "peername":
            return self._address if self._address is not None else default
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        return default

    def _fatal_error(self, exc: BaseException) -> None:
        if not is_quiet(exc):
            self._loop.call_exception_handler({"message": "Fatal error on datagram transport", "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _io_lost(self, exc: OSError) -> None:
        self._events = 0
        self._sock_gone = True
        self._fatal_error(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._conn_lost = True
        self._closing = True
        self._wq.clear()
        self._wsize = 0
        if self._events:
            self._events = 0
            self._watch.unregister(self._fd)
        h = self._lost_handle = Handle(self._call_connection_lost, (exc,))
        self._loop._ready.append(h)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        self._lost_handle = None
        try:
            if self._made:
                self._protocol.connection_lost(exc)
        finally:
            owners = self._loop._owners
            if owners.get(self._fd) is self:
                del owners[self._fd]
            if self._sock_gone:
                self._sock.detach()
            else:
                self._sock.close()
            self._protocol = None
            self._datagram_received = None

    def _close_now(self) -> None:
        if not self._conn_lost:
            self._force_close(None)
        h = self._lost_handle
        if h is not None and not h._cancelled:
            args = h._args
            h.cancel()
            self._call_connection_lost(*args)  # type: ignore[misc]


def _resolve(addr: Any, family: int, passive: bool) -> list:
    host, port = addr[0], addr[1]
    flags = socket.AI_PASSIVE if passive else 0
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, flags)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}, {port!r}) returned nothing")
    return infos


def create_datagram_endpoint(loop: Any, protocol_factory: Callable[[], Any], local_addr: Any = None,
                             remote_addr: Any = None, *, family: int = 0, proto: int = 0,
                             reuse_port: bool = False, allow_broadcast: bool = False,
                             sock: Optional[socket.socket] = None) -> Tuple[DatagramTransport, Any]:
    """Make a datagram endpoint; returns ``(transport, protocol)`` at once.

    ``local_addr`` is bound, ``remote_addr`` connected (then ``sendto(data)``
    needs no address and only that peer's datagrams arrive).  ``family=AF_UNIX``
    takes paths.  ``sock``: use an existing datagram socket.  Addresses are
    resolved synchronously: pass numeric ones on a busy loop.
    ``connection_made`` runs on the next iteration.
    """
    if loop.is_closed():
        raise RuntimeError("Reactor is closed")
    address = None
    if sock is not None:
        if local_addr is not None or remote_addr is not None:
            raise ValueError("local_addr/remote_addr and sock can not be specified at the same time")
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"a datagram socket was expected, got {sock!r}")
        sock.setblocking(False)
        try:
            address = sock.getpeername()
        except OSError:
            address = None
    elif family == getattr(socket, "AF_UNIX", None):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if local_addr is not None:
                sock.bind(local_addr)
            if remote_addr is not None:
                sock.connect(remote_addr)
                address = remote_addr
        except BaseException:
            sock.close()
            raise
    else:
        if local_addr is None and remote_addr is None and family == 0:
            raise ValueError("unexpected address family: give family=, local_addr or remote_addr")
        local_infos = _resolve(local_addr, family, True) if local_addr is not None else None
        remote_infos = _resolve(remote_addr, family, False) if remote_addr is not None else None
        pairs = []
        if local_infos and remote_infos:
            for li in local_infos:
                for ri in remote_infos:
                    if li[0] == ri[0]:
                        pairs.append((li[0], li[4], ri[4]))
            if not pairs:
                raise ValueError("local_addr and remote_addr have no address family in common")
        elif local_infos:
            pairs = [(li[0], li[4], None) for li in local_infos]
        elif remote_infos:
            pairs = [(ri[0], None, ri[4]) for ri in remote_infos]
        else:
            pairs = [(family, None, None)]
        last_exc: Optional[BaseException] = None
        for af, local, remote in pairs:
            s = socket.socket(af, socket.SOCK_DGRAM, proto)
            try:
                s.setblocking(False)
                if reuse_port:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if allow_broadcast:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                if local is not None:
                    s.bind(local)
                if remote is not None:
                    s.connect(remote)  # immediate for datagram sockets
                    address = remote
            except OSError as exc:
                s.close()
                last_exc = exc
                continue
            except BaseException:
                s.close()
                raise
            sock = s
            break
        if sock is None:
            assert last_exc is not None
            raise last_exc
    protocol = protocol_factory()
    transport = DatagramTransport(loop, sock, protocol, address)
    loop._ready.append(Handle(transport._start, ()))
    return transport, protocol
