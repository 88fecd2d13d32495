"""Helpers for the hardening suites: probes and checks on real
servers in subprocesses (``support.server.Server``), watched through
``/proc``.

A uniquely named module (every test folder has a conftest.py, so ``from
conftest import ...`` would be ambiguous).

Modes
-----
"Every backend, LT and ET, compiled and fallback" is spelled as a list of
``Mode``s: ``c-epoll``, ``c-epoll-edge``, ``c-poll``, ``c-select`` (the
compiled core, whatever the environment says) and ``py-epoll``,
``py-epoll-edge`` (``FASTMUX_NO_EXTENSIONS=1`` in the *server's*
environment).  ``c-*`` modes inherit the test process's environment, so the
CI pass that forces the fallback runs them on the fallback too; there the
``py-*`` modes would repeat them and are left out.
"""
from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

from fastmux._impl import WANT_EXTENSIONS
from support.net import TIMEOUT, connect, recv_exactly, recv_line, recv_until_closed
from support.server import Mode, Server

# FASTMUX_SOAK_SCALE sizes the @pytest.mark.soak parts (1.0: full size); the
# default keeps the whole suite inside the CI budget.
DEFAULT_SOAK_SCALE = 0.5
SOAK_SCALE = float(os.environ.get("FASTMUX_SOAK_SCALE", "") or DEFAULT_SOAK_SCALE)


def scaled(at_scale_one: int, minimum: int) -> int:
    """``at_scale_one`` times FASTMUX_SOAK_SCALE, at least ``minimum``."""
    return max(minimum, int(at_scale_one * SOAK_SCALE))


def _compiled_loads() -> bool:
    if not WANT_EXTENSIONS:
        return False
    try:
        import fastmux._selectors_c  # noqa: F401
    except ImportError:
        return False
    return True


COMPILED = _compiled_loads()


# -- modes ------------------------------------------------------------------------

C_MODES = [Mode("epoll"), Mode("epoll", edge=True), Mode("poll"), Mode("select")]
PY_MODES = [Mode("epoll", fallback=True), Mode("epoll", edge=True, fallback=True)] if COMPILED else []
# The subset for the costlier fault tests: each backend and trigger once on
# the compiled core, the fallback on level-triggered epoll.
FAULT_MODES = C_MODES + PY_MODES[:1]


def mode_params(modes: Sequence[Mode]) -> List[Any]:
    return [pytest.param(m, id=m.id) for m in modes]


def echo_ok(srv: Server, payload: bytes = b"ping\n", timeout: float = TIMEOUT) -> bool:
    """A fresh connection echoes ``payload`` back."""
    with connect(srv, timeout) as c:
        c.sendall(payload)
        return recv_exactly(c, len(payload)) == payload


def http_get(srv: Server, target: str = "/", timeout: float = TIMEOUT) -> Tuple[int, bytes]:
    """One ``GET`` on a fresh connection with ``Connection: close``: (status, body)."""
    with connect(srv, timeout) as c:
        c.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = recv_until_closed(c)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


def menu_ok(srv: Server) -> bool:
    with connect(srv) as c:
        welcome = recv_line(c)
        c.sendall(b"1000\n")
        return bool(welcome) and recv_line(c).endswith(b"\n")


def upload(srv: Server, name: bytes, data: bytes) -> bytes:
    """One ``put|NAME|SIZE`` upload; the final status line (or the refusal)."""
    with connect(srv) as c:
        c.sendall(b"put|" + name + b"|%d\n" % len(data))
        ack = recv_line(c)
        if ack != b"ready\n":
            return ack
        c.sendall(data)
        return recv_line(c)


def fill_without_reading(sock: socket.socket, chunk: bytes, seconds: float, max_bytes: int) -> int:
    """Send ``chunk`` repeatedly for ``seconds`` (or ``max_bytes``) on a socket never
    read from; returns the bytes the kernel took."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and sent < max_bytes:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                select_wait(sock, write=True, timeout=0.05)
            except (BrokenPipeError, ConnectionResetError):
                break
    finally:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
    return sent


def select_wait(sock: socket.socket, write: bool = False, timeout: float = 0.05) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ)
        return bool(sel.select(timeout))


# -- health -----------------------------------------------------------------------------

IDLE_CPU_LIMIT = 0.15  # CPU seconds per idle second above which a server is spinning


def assert_healthy(srv: Server, probe: Callable[[Server], Any], *, fds: Optional[int] = None,
                   idle: float = 0.5) -> None:
    """Alive, answers a fresh ``probe``, back to ``fds`` descriptors (if given) and
    not spinning (CPU over ``idle`` quiet seconds)."""
    assert srv.alive(), f"server died (exit {srv.proc.returncode}):\n{srv.stderr()[-4000:]}"
    assert probe(srv), "the server does not answer a fresh client"
    if fds is not None:
        now = srv.wait_fds(fds)
        assert now <= fds, f"descriptor leak: {fds} before, {now} after: {sorted(srv.fd_targets())}"
    cpu = srv.idle_cpu(idle)
    assert cpu < IDLE_CPU_LIMIT * max(idle, 1.0), f"{cpu:.3f} CPU seconds in {idle}s idle: spinning"


@contextlib.contextmanager
def many_sockets(n: int) -> Any:
    """A list that closes every socket in it on exit (the test process's own fds)."""
    socks: List[socket.socket] = []
    try:
        yield socks
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


@contextlib.contextmanager
def watchdog(proc: subprocess.Popen, seconds: float) -> Any:
    """Kill ``proc`` if it is still running ``seconds`` from now (for reads of
    its output that have no timeout of their own)."""
    timer = threading.Timer(seconds, lambda: proc.poll() is None and proc.kill())
    timer.daemon = True
    timer.start()
    try:
        yield proc
    finally:
        timer.cancel()


def report(name: str, **figures: Any) -> None:
    """Print measured figures (pytest -s shows them; -rA keeps them in the summary)."""
    text = " ".join(f"{k}={v}" for k, v in figures.items())
    sys.stdout.write(f"\n[hardening] {name}: {text}\n")


class Counter:
    """A thread-safe counter for background client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: Dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.values[key] = self.values.get(key, 0) + n

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self.values.get(key, 0)

