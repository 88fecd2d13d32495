"""Helpers for the server tests (a uniquely named module: every test folder has
a conftest.py, so ``from conftest import ...`` would be ambiguous): run ``python -m fastmux serve ...`` and talk to it.

Every server runs as a subprocess started through the CLI with ``--port 0``;
the test reads the ``listening on ...`` ready line.  Everything is bounded:
reads use socket timeouts, process waits use timeouts, and a server still
running at the end of a test is killed.

The servers run on fastmux's reactor.  ``FASTMUX_TEST_LOOP=asyncio`` (or
uvloop) runs the same protocols on asyncio instead, through the CLI's hidden
``--loop`` switch.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import fastmux

# The fastmux under test: the source tree in a checkout, site-packages when CI
# tests the installed wheel.  Children run from (and import) the same one:
# `python -m` puts the working directory first on sys.path.
ROOT = Path(fastmux.__file__).resolve().parents[1]


def _reactor_loads() -> bool:
    try:
        from fastmux.reactor import Reactor  # noqa: F401
    except ImportError:
        return False
    return True


LOOP = os.environ.get("FASTMUX_TEST_LOOP") or ("fastmux" if _reactor_loads() else "asyncio")


def fastmux_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "fastmux", *args]


def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


class Server:
    """A ``fastmux serve KIND`` subprocess."""

    def __init__(self, kind: str, *args: str, port0: bool = True, timeout: float = 20.0,
                 preexec_fn=None, loop: Optional[str] = None) -> None:
        argv = ["serve", kind]
        if port0 and "--port" not in args and "--unix" not in args:
            argv += ["--port", "0"]
        argv += list(args) + ["--loop", loop or LOOP, "--log-level", "debug"]
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            fastmux_cmd(*argv), stdout=subprocess.PIPE, stderr=self.stderr_file, stdin=subprocess.DEVNULL,
            env=child_env(), cwd=str(ROOT), preexec_fn=preexec_fn,
        )
        self.addresses = self._ready(timeout)

    def _ready(self, timeout: float) -> List[str]:
        deadline = time.monotonic() + timeout
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self._give_up(f"no ready line within {timeout}s")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self._give_up("server exited before ready")
                line += chunk
        text = line.decode().strip()
        assert text.startswith("listening on "), text
        return text[len("listening on "):].split()

    def _give_up(self, why: str) -> None:
        self.kill()
        err = self.stderr()
        self.close()
        raise AssertionError(f"{why} (exit {self.proc.returncode}); stderr:\n{err}")

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout}s after {sig!r}:\n{self.stderr()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr_file.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_addr(text: str):
    from fastmux.servers._net import parse_target

    return parse_target(text)


def connect(address: str, timeout: float = 10.0) -> socket.socket:
    family, sockaddr = parse_addr(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def recv_line(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    """One ``\\n``-terminated line (b'' at EOF); the socket's timeout bounds it."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        assert len(buf) <= limit
    return buf


def recv_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
