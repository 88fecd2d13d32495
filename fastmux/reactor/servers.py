"""Listening sockets: ``create_server``, ``create_unix_server`` and :class:`Server`.

Accepting
---------
Each listening socket is a ``_Listener`` registered with the selector (its
key's ``data``).  On a wake-up it accepts in a loop, at most
``ACCEPT_BUDGET`` connections (fairness with the connections already
served); level-triggered, the kernel reports the rest next iteration;
edge-triggered, the listener re-queues itself.  Each accepted socket is made
non-blocking, gets ``TCP_NODELAY`` (TCP), a protocol from the factory and a
transport whose ``connection_made`` runs right away (nobody else holds it
yet, so there is no reason to defer it).

Running out of file descriptors
-------------------------------
``accept`` failing with EMFILE/ENFILE/ENOBUFS/ENOMEM leaves the connection
in the backlog, so a level-triggered listener would be reported again at
once: a busy loop.  Instead the server *pauses accepting*: its listeners are
unregistered, and they come back after a delay (doubling from
``ACCEPT_RETRY_MIN`` to ``ACCEPT_RETRY_MAX`` while the shortage lasts) or
as soon as one of the server's connections closes, whichever comes first.
The first pause of an episode is reported (no traceback); the backlog is
served when descriptors are available again.

Sharing a port
--------------
``reuse_port=True`` sets SO_REUSEPORT, so several processes can each listen
on the same port and the kernel spreads connections among them.  With epoll,
listeners are registered with EPOLLEXCLUSIVE when the selector and kernel
support it, which avoids the thundering herd when one listening socket is
inherited by several processes (``create_server(sock=...)`` after fork).
"""
from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from ._memory import RELEASE_AFTER_PEAK, release_memory

from ._errors import ACCEPT_RESOURCE_ERRNOS, ACCEPT_SKIP_ERRNOS
from ._fdwatch import EPOLLET, EPOLLEXCLUSIVE, EVENT_READ

__all__ = ["Server", "create_server", "create_unix_server"]

ACCEPT_BUDGET = 64
ACCEPT_RETRY_MIN = 0.05
ACCEPT_RETRY_MAX = 1.0
DEFAULT_BACKLOG = 1024

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class _Listener:
    """One listening socket of a :class:`Server`; owns its registration."""

    __slots__ = ("server", "sock", "fd", "registered", "tcp", "_io_requeued")

    def __init__(self, server: "Server", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.registered = False
        self.tcp = sock.family in _TCP_FAMILIES
        self._io_requeued = False

    def start(self) -> None:
        if self.registered:
            return
        loop = self.server._loop
        flags = EPOLLEXCLUSIVE | (EPOLLET if loop._edge else 0)
        loop._watch.register(self.fd, EVENT_READ, self, flags)
        self.registered = True

    def stop(self) -> None:
        if self.registered:
            self.registered = False
            self.server._loop._watch.unregister(self.fd)

    def _on_io(self, mask: int) -> None:
        if not self._io_requeued:
            self._accept_some()

    def _io_retry(self) -> None:
        self._io_requeued = False
        if self.registered:
            self._accept_some()

    def _accept_some(self) -> None:
        server = self.server
        accept = self.sock.accept
        for _ in range(ACCEPT_BUDGET):
            try:
                conn, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_SKIP_ERRNOS:
                    continue  # that connection died in the backlog: next
                server._accept_failed(exc)
                return
            server._new_connection(conn, addr, self.tcp)
            if not self.registered:
                return  # closed or paused by a callback
        if server._loop._edge:
            server._loop._requeue_io(self)  # budget spent; the kernel will not remind us

    def _io_lost(self, exc: OSError) -> None:
        self.registered = False
        self.server._loop.call_exception_handler({"message": "listening socket lost", "exception": exc,
                                                  "server": self.server})
        self.sock.detach()  # the number is not ours any more
        self.server._listener_lost(self)

    def _close_now(self) -> None:
        self.server.close()

    def __repr__(self) -> str:
        return f"<listener fd={self.fd} of {self.server!r}>"


class Server:
    """Listening sockets that make a transport and a protocol per connection.

    Made by ``Reactor.create_server``/``create_unix_server``; serving starts
    at once unless ``start_serving=False``.  ``close()`` stops listening and
    closes the listening sockets; connections already accepted live on.
    """

    def __init__(self, loop: Any, protocol_factory: Callable[[], Any], sockets: Sequence[socket.socket], *,
                 unix_path: Optional[str] = None, unix_ident: Optional[Tuple[int, int]] = None) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sockets = list(sockets)
        self._listeners = [_Listener(self, s) for s in self._sockets]
        self._unix_path = unix_path
        self._unix_ident = unix_ident
        self._pid = os.getpid()  # only this process removes the Unix socket file (see _unlink_unix)
        self._serving = False
        self._closed = False
        self._paused = False
        self._retry_timer: Any = None
        self._retry_delay = ACCEPT_RETRY_MIN
        self._active = 0
        self._peak = 0  # most connections at once since memory was last released
        self.accept_pauses = 0  # how many times EMFILE & co. paused accepting
        loop._servers.add(self)
        for listener in self._listeners:
            loop._owners[listener.fd] = listener

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("serving" if self._serving else "idle")
        return f"<Server {state} {self.addresses!r}>"

    # -- public ----------------------------------------------------------------------

    @property
    def sockets(self) -> Tuple[socket.socket, ...]:
        """The listening sockets (empty once closed)."""
        return tuple(self._sockets) if not self._closed else ()

    @property
    def addresses(self) -> List[Any]:
        """The bound address of each listening socket (``getsockname()``)."""
        out = []
        for s in self.sockets:
            try:
                out.append(s.getsockname())
            except OSError:
                pass
        return out

    @property
    def port(self) -> Optional[int]:
        """The port of the first TCP listening socket, or None."""
        for addr in self.addresses:
            if isinstance(addr, tuple):
                return addr[1]
        return None

    @property
    def connections(self) -> int:
        """Accepted connections not yet closed."""
        return self._active

    def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError("server is closed")
        if self._serving:
            return
        self._serving = True
        if not self._paused:
            for listener in self._listeners:
                listener.start()

    def is_serving(self) -> bool:
        return self._serving and not self._closed

    def close(self) -> None:
        """Stop listening and close the listening sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        owners = self._loop._owners
        for listener in self._listeners:
            listener.stop()
            if owners.get(listener.fd) is listener:
                del owners[listener.fd]
            if listener.sock.fileno() >= 0:
                listener.sock.close()
        self._listeners = []
        self._loop._servers.discard(self)
        self._unlink_unix()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- accepting ------------------------------------------------------------------

    def _new_connection(self, conn: socket.socket, addr: Any, tcp: bool) -> None:
        loop = self._loop
        self._retry_delay = ACCEPT_RETRY_MIN
        try:
            conn.setblocking(False)
            if tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = self._factory()
        except Exception as exc:
            conn.close()
            loop.call_exception_handler({"message": "could not set up an accepted connection",
                                         "exception": exc, "server": self})
            return
        self._active += 1
        if self._active > self._peak:
            self._peak = self._active
        transport = loop._stream_cls(loop, protocol, conn, server=self, peer=addr)
        transport._connection_made()

    def _detach(self, transport: Any) -> None:
        self._active -= 1
        if self._active == 0 and self._peak >= RELEASE_AFTER_PEAK:
            self._peak = 0
            self._loop.call_soon(release_memory)  # see _memory
        if self._paused:
            self._resume_accepting()  # a descriptor was just freed

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno not in ACCEPT_RESOURCE_ERRNOS:
            # Unexpected: report it, and back off rather than risk a busy loop.
            self._loop.call_exception_handler({"message": "accept() failed", "exception": exc, "server": self})
            self._pause_accepting(report=None)
            return
        if self._retry_delay == ACCEPT_RETRY_MIN:  # the first pause of an episode
            report = f"accept() failed: {exc.strerror or exc}; pausing accepting (resumes when a connection " \
                     f"closes, or in {ACCEPT_RETRY_MIN}s..{ACCEPT_RETRY_MAX}s)"
        else:
            report = None
        self._pause_accepting(report)

    def _pause_accepting(self, report: Optional[str]) -> None:
        if self._paused or self._closed:
            return
        self._paused = True
        self.accept_pauses += 1
        for listener in self._listeners:
            listener.stop()
        if report is not None:
            self._loop.call_exception_handler({"message": report, "server": self})
        self._retry_timer = self._loop.call_later(self._retry_delay, self._resume_accepting)
        self._retry_delay = min(self._retry_delay * 2, ACCEPT_RETRY_MAX)

    def _resume_accepting(self) -> None:
        if not self._paused or self._closed:
            return
        self._paused = False
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self._serving:
            for listener in self._listeners:
                listener.start()

    def _listener_lost(self, listener: _Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if listener.sock in self._sockets:
            self._sockets.remove(listener.sock)
        if self._loop._owners.get(listener.fd) is listener:
            del self._loop._owners[listener.fd]

    def _unlink_unix(self) -> None:
        path = self._unix_path
        if not path or self._unix_ident is None:
            return
        if os.getpid() != self._pid:
            # A forked child closing the server it inherited: the file is the
            # parent's too (same inode), and the parent still listens on it.
            return
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._unix_ident:
                os.unlink(path)
        except OSError:
            pass


# -- making listening sockets ---------------------------------------------------------------


def _hosts(host: Union[None, str, Iterable[Optional[str]]]) -> List[Optional[str]]:
    if host is None or host == "":
        return [None]
    if isinstance(host, str):
        return [host]
    out = [h or None for h in host]
    if not out:
        raise ValueError("host is an empty list")
    return out


def _bind_inet(host: Any, port: Union[int, Iterable[int]], family: int, backlog: int, reuse_address: bool,
               reuse_port: bool) -> List[socket.socket]:
    ports = [port] if isinstance(port, int) else [p or 0 for p in port]
    if not ports:
        raise ValueError("port is an empty list")
    socks: List[socket.socket] = []
    try:
        for p in ports:
            socks.extend(_bind_port(host, p, family, backlog, reuse_address, reuse_port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_port(host: Any, port: int, family: int, backlog: int, reuse_address: bool,
               reuse_port: bool) -> List[socket.socket]:
    infos = []
    for h in _hosts(host):
        for af, type_, proto, _, sockaddr in socket.getaddrinfo(h, port, family, socket.SOCK_STREAM, 0,
                                                                socket.AI_PASSIVE):
            if af not in _TCP_FAMILIES:
                continue
            item = (af, type_, proto, sockaddr)
            if item not in infos:
                infos.append(item)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}, {port!r}) returned no usable address")
    socks: List[socket.socket] = []
    shared_port = port
    try:
        for af, type_, proto, sockaddr in infos:
            sock = socket.socket(af, type_, proto)
            socks.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                if not hasattr(socket, "SO_REUSEPORT"):
                    raise ValueError("reuse_port is not supported on this platform")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if af == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                # one socket per address: keep v6 sockets v6-only so 0.0.0.0 and :: can share a port
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and shared_port:
                # port 0 picks one free port for all the addresses, when it can
                try:
                    sock.bind((sockaddr[0], shared_port) + tuple(sockaddr[2:]))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise OSError(exc.errno, f"error while binding {sockaddr!r}: {exc.strerror}") from None
                    sock.bind(sockaddr)
            else:
                try:
                    sock.bind(sockaddr)
                except OSError as exc:
                    raise OSError(exc.errno, f"error while binding {sockaddr!r}: {exc.strerror}") from None
            if port == 0 and not shared_port:
                shared_port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def create_server(loop: Any, protocol_factory: Callable[[], Any], host: Any = None,
                  port: Union[None, int, Sequence[int]] = None, *, family: int = socket.AF_UNSPEC,
                  backlog: int = DEFAULT_BACKLOG, reuse_address: bool = True, reuse_port: bool = False,
                  sock: Union[None, socket.socket, Sequence[socket.socket]] = None,
                  start_serving: bool = True) -> Server:
    """Listen for TCP connections; returns a :class:`Server`.

    ``host``: None or ``""`` (every interface: 0.0.0.0 and ::), a name, an
    address, or a list of those, each bound on its own socket.  ``port``:
    a number or a list of numbers (every host on every port); 0 or None
    picks a free port (shared by all the addresses when possible).  Names
    are resolved synchronously (set-up, not the hot path).  ``sock``: serve
    an existing listening socket, or a list of them (then no host/port).
    """
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        sockets = [sock] if isinstance(sock, socket.socket) else list(sock)
        for s in sockets:
            if s.type != socket.SOCK_STREAM:
                raise ValueError(f"a stream socket was expected, got {s!r}")
            s.setblocking(False)
    else:
        sockets = _bind_inet(host, port or 0, family, backlog, reuse_address, reuse_port)
    server = Server(loop, protocol_factory, sockets)
    if start_serving:
        server.start_serving()
    return server


def create_unix_server(loop: Any, protocol_factory: Callable[[], Any], path: Any = None, *,
                       backlog: int = DEFAULT_BACKLOG, sock: Optional[socket.socket] = None,
                       start_serving: bool = True, cleanup: bool = True) -> Server:
    """Listen on a Unix socket ``path`` (a name starting with NUL is abstract).

    A stale socket file (nobody listening) is replaced; a path that is not a
    socket, or one with a live server, is an error.  ``close()`` removes the
    file if it is still the one made here (``cleanup``), and only in the
    process that made it: a forked child closing what it inherited leaves it.
    """
    ident = None
    if sock is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"a Unix stream socket was expected, got {sock!r}")
        sock.setblocking(False)
    else:
        if path is None:
            raise ValueError("path or sock is required")
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = path.decode()
        abstract = path.startswith("\0")
        if not abstract:
            _remove_stale_unix_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(backlog)
            sock.setblocking(False)
            if not abstract:
                st = os.stat(path)
                ident = (st.st_dev, st.st_ino)
        except BaseException:
            sock.close()
            raise
    server = Server(loop, protocol_factory, [sock], unix_path=path if cleanup else None, unix_ident=ident)
    if start_serving:
        server.start_serving()
    return server


def _remove_stale_unix_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)  # left behind by a process that died
        except FileNotFoundError:
            pass
    except OSError:
        pass  # let bind() say what is wrong
    else:
        raise OSError(errno.EADDRINUSE, f"{path}: a server is already listening there")
    finally:
        probe.close()
