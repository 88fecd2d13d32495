"""Datagram endpoints: ``create_datagram_endpoint`` and :class:`DatagramTransport`.

Reading takes up to ``DGRAM_BUDGET`` datagrams per wake-up (one ``epoll_wait``
amortised over a burst; then the other fds get their turn).
Level-triggered, the kernel reports the rest next iteration;
edge-triggered, the endpoint drains to EAGAIN under that budget and
re-queues itself, like stream transports (see the essay in ``loop``).

``sendto`` sends at once and queues only when the socket buffer is full
(the queue is flushed in order when the socket is writable, with the same
high/low water marks and ``pause_writing``/``resume_writing`` as streams).

Errors: ICMP-driven errors (connection refused on a connected socket, an
unreachable host...) and send errors go to ``protocol.error_received(exc)``
and the endpoint stays open.  A protocol whose ``datagram_received`` raises
is reported through the exception handler and the endpoint stays open too:
it is shared by all peers, and one bad datagram should not end it.

Compiled into ``_datagram_c`` (typed by ``src/fastmux/reactor/_datagram_c.pxd``)
on the compiled ``_transport_c.BaseTransport``, like ``stream``.
"""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

from ._errors import is_quiet

if cython.compiled:  # the compiled twin's siblings; _datagram_c.pxd cimports BaseTransport
    from ._fdwatch_c import EPOLLET, EVENT_READ, EVENT_WRITE
else:
    from ._fdwatch import EPOLLET, EVENT_READ, EVENT_WRITE
    from ._transport import BaseTransport
if cython.compiled:  # the compiled handles, which the loop reads in C
    from ._handles_c import Handle
else:
    from .handles import Handle

if TYPE_CHECKING:
    from .loop import Reactor

__all__ = ["DatagramTransport", "create_datagram_endpoint"]

DGRAM_BUDGET = 32
MAX_DGRAM = 65536 + 256


class DatagramTransport(BaseTransport):
    """A UDP or Unix datagram socket; its write queue holds ``(data, addr)`` pairs."""

    __slots__ = ("_datagram_received", "_address", "_edge")

    def __init__(self, loop: Reactor, sock: socket.socket, protocol: Any, address: Any = None) -> None:
        super().__init__(loop, protocol)
        self._datagram_received: Any = None  # the protocol's, looked up once it is started
        self._address = address  # the connected peer, if any
        self._edge = loop._edge
        self._own(sock)

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
                self._register(EPOLLET)
            return
        ev = (0 if self._closing else EVENT_READ) | (EVENT_WRITE if self._wq else 0)
        old = self._events
        if ev == old:
            return
        self._events = ev
        if old == 0:
            self._register(0)
        elif ev == 0:
            self._watch.unregister(self._fd)
        else:
            try:
                self._watch.modify(self._fd, ev, self)
            except OSError as exc:
                self._events = 0
                self._fatal_error(exc, "registering with the selector")

    def _register(self, flags: int) -> None:
        try:
            self._watch.register(self._fd, self._events, self, flags)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc, "registering with the selector")

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
                self._fatal_error(exc, "recvfrom")
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
        self._queue().append((data, addr))
        self._wsize += len(data)
        self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

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
            self._resume_protocol()
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

    # -- the rest of the API -----------------------------------------------------------

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

    def _release(self) -> None:
        super()._release()
        self._datagram_received = None


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
