"""Addresses and listening sockets for the servers and their clients.

The servers make their own listening sockets and hand them to the reactor
(``create_server(factory, sock=...)``).  That keeps one code path for
``--port 0`` (the bound address is printed on the ready line), for several
``--port`` options, for Unix sockets, and for ``--workers``, where every
worker binds the same port with ``SO_REUSEPORT``.

Address text, used on the ready line and accepted by the clients:
``127.0.0.1:9999``, ``[::1]:9999``, ``unix:/path/to.sock``.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
from typing import List, Optional, Tuple

Address = Tuple[int, object]  # (family, sockaddr)


def format_address(family: int, sockaddr: object) -> str:
    if family == getattr(socket, "AF_UNIX", None):
        path = sockaddr.decode() if isinstance(sockaddr, bytes) else str(sockaddr)
        return f"unix:{path}"
    host, port = sockaddr[0], sockaddr[1]  # type: ignore[index]
    if family == socket.AF_INET6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def sock_address(sock: socket.socket) -> str:
    return format_address(sock.family, sock.getsockname())


def parse_target(text: str, default_host: str = "127.0.0.1") -> Tuple[int, object]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``unix:PATH`` -> (family, sockaddr).

    Host names are resolved here (first address wins), so callers get a
    sockaddr they can ``connect()`` or ``sendto()`` directly.
    """
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError("unix: needs a path")
        return socket.AF_UNIX, path
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT or unix:PATH, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or default_host
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _resolve(host: str, port: int, type_: int) -> List[Tuple[int, tuple]]:
    seen = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(
        host or None, port, type=type_, flags=socket.AI_PASSIVE
    ):
        if (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    return seen


def bind_inet(
    host: str,
    port: int,
    *,
    udp: bool = False,
    reuse_port: bool = False,
    listen: Optional[int] = 1024,
) -> List[socket.socket]:
    """Bind every address ``host`` resolves to; ``listen=None`` binds only.

    Binding without listening is how the ``--workers`` parent reserves a
    port: a bound, non-listening TCP socket takes no connections, but its
    ``SO_REUSEPORT`` lets the workers bind the same port.
    """
    type_ = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    socks: List[socket.socket] = []
    try:
        for family, sockaddr in _resolve(host, port, type_):
            sock = socket.socket(family, type_)
            socks.append(sock)
            if not udp:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per resolved address: keep v6 sockets v6-only so
                # "localhost" can bind both 127.0.0.1 and ::1 on one port.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            if port == 0 and len(socks) == 1:
                # Later addresses of the same host share the first one's port.
                port = sock.getsockname()[1]
            if listen is not None and not udp:
                sock.listen(listen)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def bind_unix(path: str, backlog: int = 1024) -> socket.socket:
    """Listen on a Unix socket; a stale socket file (nobody listening) is replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: left behind by a process that died
        else:
            raise OSError(errno.EADDRINUSE, f"{path}: a server is already listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:  # bind() does not name the path (a missing directory, say)
            raise OSError(exc.errno, exc.strerror, path) from None
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UnixCleanup:
    """Remembers a Unix socket's file at bind time; ``remove()`` deletes it
    later only if it is still that file (not one a newer server made)."""

    def __init__(self, sock: socket.socket) -> None:
        self.path: Optional[str] = None
        self.ino = None
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = name.decode()
        if name and not name.startswith("\0"):  # abstract sockets have no file
            self.path = name
            try:
                self.ino = os.lstat(name).st_ino
            except OSError:
                self.path = None

    def remove(self) -> None:
        if self.path is None:
            return
        try:
            if os.lstat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except OSError:
            pass
        self.path = None


def connect(text: str, *, udp: bool = False, timeout: Optional[float] = 10.0) -> socket.socket:
    """A connected, blocking socket to ``HOST:PORT`` or ``unix:PATH``."""
    family, sockaddr = parse_target(text)
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock
