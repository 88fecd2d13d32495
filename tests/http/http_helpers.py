"""Helpers for the HTTP tests: a protocol on a fake transport
(``support.http.FakeTransport``) and a response splitter built on
http.client (servers started through the CLI are
``support.server.Server("http", ...)``).

A module of its own (not conftest.py) so tests can import it by a name no
other suite uses; the fixtures are in conftest.py."""
from __future__ import annotations

import http.client
import io
import re
import socket
import time
from typing import Any, List, Optional, Sequence, Tuple

from types import ModuleType

import fastmux.http
from fastmux.http.protocol import HttpProtocol, HttpServer
from support.http import FakeTransport

# The protocol module make_server builds from: the twin fastmux.http chose,
# or the one conftest.http_twins puts here for a module's tests.
protocol: ModuleType = fastmux.http._protocol

class Conn:
    """A protocol on a fake transport."""

    def __init__(self, server: HttpServer, **transport_kw: Any) -> None:
        self.server = server
        self.transport = FakeTransport(**transport_kw)
        self.protocol: HttpProtocol = server()
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    def feed(self, *chunks: bytes) -> bytes:
        for chunk in chunks:
            if chunk:
                self.protocol.data_received(chunk)
        return self.transport.take()

    def lose(self) -> None:
        self.protocol.connection_lost(None)

    @property
    def finished(self) -> bool:
        """Closing: EOF written (lingering close) or closed outright."""
        t = self.transport
        return t.eof_written or t.closed


def make_server(**kw: Any) -> HttpServer:
    config = kw.pop("config", None) or protocol.HttpConfig(**kw.pop("limits", {}))
    return protocol.HttpServer(None, config, **kw)




# -- parsing responses --------------------------------------------------------


class _Unclosable(io.BytesIO):
    def close(self) -> None:  # http.client closes fp after each body
        pass


class _Sock:
    def __init__(self, data: bytes) -> None:
        self.file = _Unclosable(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self.file


class Resp:
    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes, raw_head: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name: str) -> Optional[str]:
        vals = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(vals) <= 1, f"duplicate {name}: {vals}"
        return vals[0] if vals else None

    def __repr__(self) -> str:
        return f"<Resp {self.status} {self.headers} {self.body[:60]!r}>"


def parse_responses(data: bytes, methods: Sequence[str] = ()) -> List[Resp]:
    """Split a byte stream into responses; ``methods`` says which were HEAD."""
    sock = _Sock(data)
    out: List[Resp] = []
    i = 0
    while sock.file.tell() < len(data):
        start = sock.file.tell()
        method = methods[i] if i < len(methods) else "GET"
        r = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
        r.begin()
        if r.status == 100:
            continue
        body = r.read()
        end_head = data.index(b"\r\n\r\n", start) + 4
        out.append(Resp(r.status, list(r.getheaders()), body, data[start:end_head]))
        i += 1
    return out


def strip_date(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: X\r\n", data)


def recv_responses(sock: socket.socket, count: int, methods: Sequence[str] = (), timeout: float = 10.0) -> List[Resp]:
    """Read until ``count`` complete responses have arrived."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            resps = parse_responses(data, methods)
            if len(resps) >= count:
                return resps
        except (http.client.HTTPException, ValueError):
            pass
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return parse_responses(data, methods)
