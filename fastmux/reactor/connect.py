"""Outgoing stream connections: ``create_connection`` / ``create_unix_connection``.

Both return ``(transport, protocol)`` at once; the connect itself is
non-blocking.  Writes made before the connection is up are queued and sent,
in order, right after ``connection_made``.

Failure policy
--------------
A connection that never came up was never made, so ``connection_made`` and
``connection_lost`` are *not* called.  Instead the protocol's optional
``connection_failed(exc)`` is called exactly once, on the loop, after
``create_connection`` has returned (even when the failure was immediate).
A protocol without that method has the error reported through the
reactor's exception handler.  The same holds for ``close()``/``abort()`` on a
transport that is still connecting (``exc`` is a ConnectionAbortedError) and
for ``timeout`` (a TimeoutError).  So every protocol hears exactly one of
``connection_lost`` (after ``connection_made``) or ``connection_failed``.

Names are resolved in the reactor's default executor (``getaddrinfo`` can
block); numeric addresses are used at once.  The addresses are tried in
order until one connects.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable, List, Optional, Tuple

from ._fdwatch import EVENT_WRITE
from .handles import Handle

__all__ = ["create_connection", "create_unix_connection"]

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in _TCP_FAMILIES and sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Connector:
    """Drives one connect: resolution, then each address in turn, then the transport."""

    __slots__ = ("loop", "transport", "infos", "sock", "fd", "timer", "errors", "local_addr", "done",
                 "target", "_io_requeued")

    def __init__(self, loop: Any, transport: Any, target: str, local_addr: Any) -> None:
        self.loop = loop
        self.transport = transport
        self.target = target
        self.local_addr = local_addr
        self.infos: List[Tuple[Any, ...]] = []
        self.sock: Optional[socket.socket] = None
        self.fd = -1
        self.timer: Any = None
        self.errors: List[OSError] = []
        self.done = False
        self._io_requeued = False

    def __repr__(self) -> str:
        return f"<connector to {self.target}>"

    def start(self, infos: Optional[List[Tuple[Any, ...]]], resolve: Optional[Tuple[Any, ...]],
              timeout: Optional[float]) -> None:
        if timeout is not None:
            self.timer = self.loop.call_later(timeout, self._timed_out, timeout)
        if infos is not None:
            self.infos = list(infos)
            self._try_next()
        else:
            self.loop.run_in_executor(None, socket.getaddrinfo, *resolve, done=self._resolved)  # type: ignore[misc]

    def _resolved(self, fut: Any) -> None:
        if self.done:
            return
        try:
            infos = fut.result()
        except Exception as exc:
            self._fail(exc)
            return
        self.infos = list(infos)
        if not self.infos:
            self._fail(OSError(f"getaddrinfo returned nothing for {self.target}"))
            return
        self._try_next()

    def _try_next(self) -> None:
        while self.infos and not self.done:
            family, type_, proto, _, addr = self.infos.pop(0)
            try:
                sock = socket.socket(family, type_, proto)
            except OSError as exc:
                self.errors.append(exc)
                continue
            try:
                sock.setblocking(False)
                if self.local_addr is not None:
                    sock.bind(self.local_addr)
                sock.connect(addr)
            except (BlockingIOError, InterruptedError):
                self.sock = sock
                self.fd = sock.fileno()
                try:
                    self.loop._watch.register(self.fd, EVENT_WRITE, self)
                except OSError as exc:
                    self.sock = None
                    sock.close()
                    self.errors.append(exc)
                    continue
                self.loop._owners[self.fd] = self
                return
            except OSError as exc:
                sock.close()
                self.errors.append(OSError(exc.errno, f"connect to {addr!r} failed: {exc.strerror}"))
                continue
            except BaseException:
                sock.close()
                raise
            self._succeed(sock)  # connected at once (Unix sockets, loopback sometimes)
            return
        if not self.done:
            self._fail(self._error())

    def _error(self) -> BaseException:
        errors = self.errors
        if not errors:
            return OSError(f"no address to connect to for {self.target}")
        if len(errors) == 1 or len({str(e) for e in errors}) == 1:
            return errors[0]
        return OSError(f"Multiple exceptions: {', '.join(str(e) for e in errors)}")

    def _unwatch(self) -> Optional[socket.socket]:
        sock = self.sock
        if sock is not None:
            self.sock = None
            self.loop._watch.unregister(self.fd)
            if self.loop._owners.get(self.fd) is self:
                del self.loop._owners[self.fd]
        return sock

    def _on_io(self, mask: int) -> None:
        sock = self._unwatch()
        if sock is None:
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            peer = self.target
            sock.close()
            self.errors.append(OSError(err, f"connect to {peer} failed: {os.strerror(err)}"))
            self._try_next()
        else:
            self._succeed(sock)

    def _io_retry(self) -> None:
        self._io_requeued = False

    def _io_lost(self, exc: OSError) -> None:
        sock = self.sock
        self.sock = None
        if sock is not None:
            sock.detach()
        self._fail(exc)

    def _succeed(self, sock: socket.socket) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        _set_nodelay(sock)
        transport = self.transport
        transport._attach(sock)
        self.loop._ready.append(Handle(transport._connection_made, ()))

    def _fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        sock = self._unwatch()
        if sock is not None:
            sock.close()
        self.transport._connect_failed(exc)

    def _timed_out(self, timeout: float) -> None:
        self.timer = None
        self.infos = []
        self._fail(TimeoutError(f"connect to {self.target} timed out after {timeout}s"))

    def cancel(self) -> None:
        """The transport was closed while connecting: release everything, say nothing."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        sock = self._unwatch()
        if sock is not None:
            sock.close()

    def _close_now(self) -> None:
        self.transport._close_now()


def _numeric(host: Any, port: Any, family: int) -> Optional[List[Tuple[Any, ...]]]:
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None


def create_connection(loop: Any, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, *,
                      family: int = socket.AF_UNSPEC, sock: Optional[socket.socket] = None,
                      local_addr: Any = None, timeout: Optional[float] = None) -> Tuple[Any, Any]:
    """Connect to ``host:port``; returns ``(transport, protocol)`` at once.

    ``connection_made`` follows when connected; see the module docstring for
    failures.  ``sock``: wrap an already connected socket instead.
    ``timeout``: give up connecting after this many seconds.
    """
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"a stream socket was expected, got {sock!r}")
        sock.setblocking(False)
        _set_nodelay(sock)
        protocol = protocol_factory()
        transport = loop._stream_cls(loop, protocol)
        transport._attach(sock)
        loop._ready.append(Handle(transport._connection_made, ()))
        return transport, protocol
    if host is None or port is None:
        raise ValueError("host and port are required (or sock)")
    if loop.is_closed():
        raise RuntimeError("Reactor is closed")
    protocol = protocol_factory()
    transport = loop._stream_cls(loop, protocol)
    target = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    connector = transport._connector = _Connector(loop, transport, target, local_addr)
    infos = _numeric(host, port, family)
    connector.start(infos, (host, port, family, socket.SOCK_STREAM), timeout)
    return transport, protocol


def create_unix_connection(loop: Any, protocol_factory: Callable[[], Any], path: Any = None, *,
                           sock: Optional[socket.socket] = None,
                           timeout: Optional[float] = None) -> Tuple[Any, Any]:
    """Connect to a Unix stream socket; same contract as ``create_connection``."""
    if sock is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        return create_connection(loop, protocol_factory, sock=sock)
    if path is None:
        raise ValueError("path or sock is required")
    if loop.is_closed():
        raise RuntimeError("Reactor is closed")
    path = os.fspath(path)
    protocol = protocol_factory()
    transport = loop._stream_cls(loop, protocol)
    connector = transport._connector = _Connector(loop, transport, f"unix:{path}", None)
    connector.start([(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", path)], None, timeout)
    return transport, protocol
