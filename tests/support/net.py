"""Blocking client sockets; every read is bounded by the socket's timeout."""
from __future__ import annotations

import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

from fastmux.servers._net import parse_target

TIMEOUT = 10.0  # bound of every single socket operation and wait
MIB = 1024 * 1024

Target = Union[str, Tuple[str, int], Any]  # an address string, (host, port), or a support.server.Server


def connect(target: Target, timeout: float = TIMEOUT) -> socket.socket:
    """A blocking client socket with a timeout, to ``HOST:PORT``/``unix:PATH``
    (as a server's ready line spells it), ``(host, port)`` or a server."""
    address = getattr(target, "address", target)
    if isinstance(address, str):
        family, sockaddr = parse_target(address)
    else:
        family, sockaddr = (socket.AF_INET6 if ":" in address[0] else socket.AF_INET), address
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def rst_close(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the peer's next recv/send meets ECONNRESET/EPIPE."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes (fewer at EOF)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_line(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    """One ``\\n``-terminated line (shorter at EOF)."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        assert len(buf) <= limit, "line too long"
    return bytes(buf)


def send_while_reading(sock: socket.socket, payload: bytes, send: Optional[Callable[[bytes], Any]] = None,
                       timeout: float = TIMEOUT) -> bytes:
    """Send ``payload`` (through ``send``, default ``sock.sendall``) while a
    thread reads as many bytes back (a peer echoing more than the socket
    buffers hold would block a sender that did not read); what came back
    within ``timeout``."""
    got = bytearray()

    def reader() -> None:
        while len(got) < len(payload):
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            got.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    (send or sock.sendall)(payload)
    thread.join(timeout)
    return bytes(got)


def recv_until_closed(sock: socket.socket, limit: int = 64 * MIB, timeout: Optional[float] = None) -> bytes:
    """Everything until EOF (a reset counts as EOF); ``timeout``, if given,
    replaces the socket's timeout of each read."""
    if timeout is not None:
        sock.settimeout(timeout)
    chunks = []
    total = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        assert total <= limit, "more than expected before EOF"
    return b"".join(chunks)


def nc_command(host: str, port: int, quit_after: float = 2.0) -> List[str]:
    """argv of the netcat-like client ``nc.py`` (``nc -q QUIT_AFTER HOST PORT``)."""
    return [sys.executable, str(Path(__file__).with_name("nc.py")), host, str(port), str(quit_after)]
