"""Helpers for the hardening suites (issue 6): real servers in subprocesses,
watched through ``/proc``.

A uniquely named module (every test folder has a conftest.py, so ``from
conftest import ...`` would be ambiguous).

Every server is started through the CLI (``python -m fastmux serve KIND
--port 0``) and found through its ready line, as a user would run it; the
test then reads its open descriptors (``/proc/<pid>/fd``), resident memory
(``VmRSS``) and CPU time (``fastmux.benchmarks.load.procstat``) from outside.
Everything is bounded: reads use socket timeouts, waits use deadlines, and
a server still running when its ``with`` block ends is killed.

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
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

import fastmux
from fastmux._impl import WANT_EXTENSIONS
from fastmux.benchmarks.load import procstat

# The fastmux under test: the checkout, or site-packages when CI tests the
# installed wheel.  Children import the same one.
ROOT = Path(fastmux.__file__).resolve().parents[1]
TIMEOUT = 10.0  # bound of every single socket operation and wait
MIB = 1024 * 1024

# FASTMUX_SOAK_SCALE sizes the @pytest.mark.soak parts (1.0 = the sizes the
# issue names); the default keeps the whole suite inside the CI budget.
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


@dataclass(frozen=True)
class Mode:
    backend: str
    edge: bool = False
    fallback: bool = False  # FASTMUX_NO_EXTENSIONS=1 in the server

    @property
    def id(self) -> str:
        return f"{'py' if self.fallback else 'c'}-{self.backend}{'-edge' if self.edge else ''}"

    def args(self) -> List[str]:
        return ["--backend", self.backend] + (["--edge"] if self.edge else [])

    def env(self) -> Dict[str, str]:
        return {"FASTMUX_NO_EXTENSIONS": "1"} if self.fallback else {}


DEFAULT_MODE = Mode("epoll")
C_MODES = [Mode("epoll"), Mode("epoll", edge=True), Mode("poll"), Mode("select")]
PY_MODES = [Mode("epoll", fallback=True), Mode("epoll", edge=True, fallback=True)] if COMPILED else []
ALL_MODES = C_MODES + PY_MODES
# The subset for the costlier fault tests: each backend and trigger once on
# the compiled core, the fallback on level-triggered epoll.
FAULT_MODES = C_MODES + PY_MODES[:1]


def mode_params(modes: Sequence[Mode]) -> List[Any]:
    return [pytest.param(m, id=m.id) for m in modes]


# -- the server subprocess --------------------------------------------------------


def fastmux_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "fastmux", *args]


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


# stderr lines that mean "something broke inside the server"
_BAD_LOG = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Fatal error|Unhandled|Segmentation")


class ServerProc:
    """``fastmux serve KIND --port 0 ARGS`` (or any argv printing the ready line)."""

    def __init__(self, kind: str, *args: str, mode: Mode = DEFAULT_MODE, preexec_fn: Any = None,
                 env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = (), argv: Optional[List[str]] = None,
                 log_level: str = "info", timeout: float = 20.0) -> None:
        if argv is None:
            argv = fastmux_cmd("serve", kind)
            if "--port" not in args and "--unix" not in args:
                argv += ["--port", "0"]
            argv += list(args) + mode.args() + ["--log-level", log_level]
        self.argv = list(prefix) + argv
        self.kind = kind
        self.mode = mode
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            env=child_env(**mode.env(), **(env or {})), cwd=str(ROOT), preexec_fn=preexec_fn,
        )
        self.pid = self.proc.pid
        try:
            self.addresses = self._ready(timeout)
        except BaseException:
            self.close()
            raise
        self.address = self.addresses[0]
        host, _, port = self.address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)

    def _ready(self, timeout: float) -> List[str]:
        deadline = time.monotonic() + timeout
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"no ready line within {timeout}s; stderr:\n{self.stderr()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(5)
                    raise AssertionError(f"server exited ({self.proc.returncode}) before ready; "
                                         f"stderr:\n{self.stderr()}")
                line += chunk
        text = line.decode().strip()
        assert text.startswith("listening on "), text
        return text[len("listening on "):].split()

    # -- what /proc says about it ------------------------------------------------

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> List[str]:
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
            except OSError:
                pass
        return out

    def rss(self) -> int:
        return procstat.rss_bytes(self.pid)

    def cpu(self) -> float:
        """CPU seconds (user + system) the server has used so far."""
        return procstat.cpu_times(self.pid).total

    def wait_fds(self, at_most: int, timeout: float = TIMEOUT) -> int:
        """Wait until the server holds at most ``at_most`` descriptors; the last count."""
        return wait_for(lambda: (lambda n: n if n <= at_most else None)(self.fds()), timeout) or self.fds()

    def idle_cpu(self, seconds: float = 1.0) -> float:
        """CPU seconds the server burns over ``seconds`` of doing nothing asked of it."""
        c0 = self.cpu()
        time.sleep(seconds)
        return self.cpu() - c0

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def bad_log_lines(self, allow: Iterable[str] = ()) -> List[str]:
        allowed = [re.compile(a) for a in allow]
        return [line for line in self.stderr().splitlines()
                if _BAD_LOG.search(line) and not any(a.search(line) for a in allowed)]

    def assert_clean_log(self, allow: Iterable[str] = ()) -> None:
        bad = self.bad_log_lines(allow)
        assert not bad, "the server logged errors:\n" + "\n".join(bad[:20]) + "\n--- stderr:\n" + self.stderr()[-4000:]

    # -- ending it -----------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout}s of {sig!r}:\n{self.stderr()[-4000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "ServerProc":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- waiting --------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# -- clients --------------------------------------------------------------------------


def connect(srv_or_addr: Any, timeout: float = TIMEOUT) -> socket.socket:
    """A blocking client socket with a timeout, to a ServerProc or ``(host, port)``."""
    addr = (srv_or_addr.host, srv_or_addr.port) if isinstance(srv_or_addr, ServerProc) else srv_or_addr
    sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(addr)
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
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_line(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    """One ``\\n``-terminated line (shorter at EOF); the socket's timeout bounds it."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        assert len(buf) <= limit, "line too long"
    return bytes(buf)


def recv_until_closed(sock: socket.socket, limit: int = 64 * MIB) -> bytes:
    """Everything until EOF (a reset counts as EOF); the socket's timeout bounds each read."""
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


def echo_ok(srv: ServerProc, payload: bytes = b"ping\n", timeout: float = TIMEOUT) -> bool:
    """A fresh connection echoes ``payload`` back."""
    with connect(srv, timeout) as c:
        c.sendall(payload)
        return recv_exactly(c, len(payload)) == payload


def http_get(srv: ServerProc, target: str = "/", timeout: float = TIMEOUT) -> Tuple[int, bytes]:
    """One ``GET`` on a fresh connection with ``Connection: close``: (status, body)."""
    with connect(srv, timeout) as c:
        c.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = recv_until_closed(c)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


def menu_ok(srv: ServerProc) -> bool:
    with connect(srv) as c:
        welcome = recv_line(c)
        c.sendall(b"1000\n")
        return bool(welcome) and recv_line(c).endswith(b"\n")


def upload(srv: ServerProc, name: bytes, data: bytes) -> bytes:
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


def assert_healthy(srv: ServerProc, probe: Callable[[ServerProc], Any], *, fds: Optional[int] = None,
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

