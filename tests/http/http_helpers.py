"""Helpers for the HTTP tests: a fake transport that records what the
protocol does, a response splitter built on http.client, and a server
started through the real CLI (``python -m fastmux serve http``).

A module of its own (not conftest.py) so tests can import it by a name no
other suite uses; the fixtures are in conftest.py."""
from __future__ import annotations

import http.client
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any, List, Optional, Sequence, Tuple

from types import ModuleType

import fastmux.http
from fastmux.http.protocol import HttpProtocol, HttpServer

# The protocol module make_server builds from: the twin fastmux.http chose,
# or the one conftest.http_twins puts here for a module's tests.
protocol: ModuleType = fastmux.http._protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeTransport:
    """Records writes and state changes; optional native ``sendfile``."""

    def __init__(self, *, sendfile: bool = False, high_water: Optional[int] = None) -> None:
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.high_water = high_water  # simulate pause_writing when buffered over this
        self.buffered = 0
        self.paused = False
        self.protocol: Any = None
        self.writes = 0
        self.extra = {"peername": ("127.0.0.1", 12345), "socket": None}
        if sendfile:
            self.sendfile = self._sendfile  # type: ignore[assignment]
        self.sent_files: List[Tuple[int, int, int]] = []

    def write(self, data: bytes) -> None:
        assert not self.eof_written, "write after write_eof"
        assert isinstance(data, (bytes, bytearray, memoryview))
        self.writes += 1
        self.out += data
        if self.high_water is not None:
            self.buffered += len(data)
            self._check_high()

    def _check_high(self) -> None:
        if not self.paused and self.high_water is not None and self.buffered > self.high_water:
            self.paused = True
            self.protocol.pause_writing()

    def _sendfile(self, fd: Any, offset: int, count: int, *, head: bytes = b"") -> None:
        if head:
            self.write(head)  # as fastmux's transport: the head is written bytes
        fileno = fd if isinstance(fd, int) else fd.fileno()
        self.sent_files.append((fileno, offset, count))
        self.out += os.pread(fileno, count, offset)

    def drain(self) -> None:
        """The peer read everything: buffer empties, writing resumes."""
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.high_water = high
        self._check_high()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


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


# -- a real server through the CLI ---------------------------------------------


def reactor_ready() -> bool:
    try:
        from fastmux.reactor import Reactor  # noqa: F401
    except ImportError:
        return False
    return True


class CliServer:
    """``python -m fastmux serve http --port 0 ARGS`` with its ready line parsed."""

    def __init__(self, *args: str, loop: Optional[str] = None, cwd: Optional[str] = None) -> None:
        argv = [sys.executable, "-m", "fastmux", "serve", "http", "--port", "0", *args]
        if loop is None and not reactor_ready():
            loop = "asyncio"  # until fastmux.reactor lands
        if loop is not None:
            argv += ["--loop", loop]
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd or REPO, env=env,
        )
        self.loop = loop or "fastmux"
        line = self._readline(20.0)
        m = re.match(r"listening on (\S+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"no ready line: {line!r}; stderr: {self.stderr_text()}")
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return ""
        return self.proc.stdout.readline().decode()

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def http(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> Tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
        return self.proc.returncode, err.decode(errors="replace")


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until EOF (or timeout)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


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
