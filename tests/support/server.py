"""``fastmux serve KIND`` in a subprocess, as a user would run it.

Every server is started through the CLI (``python -m fastmux serve KIND
--port 0``) and found through its ready line.  It must import the fastmux
the tests import -- the checkout, or site-packages when CI tests the
installed wheel -- with the implementations (compiled or pure Python) the
tests would load in the server's environment: the server logs which one it
runs before its ready line, and a server that runs another fails the test.

The test can read the server's open descriptors (``/proc/<pid>/fd``),
resident memory and CPU time from outside.  Everything is bounded: waits
use timeouts, and a server still running when its ``with`` block (or its
fixture) ends is killed.

``FASTMUX_TEST_LOOP=asyncio`` (or uvloop) runs the same protocols on
asyncio instead of fastmux's reactor, through the CLI's hidden ``--loop``.
"""
from __future__ import annotations

import importlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import fastmux
from fastmux import _pollers
from fastmux.benchmarks.load import harness, procstat

from . import procs
from .net import TIMEOUT, connect

ROOT = harness.FASTMUX_ROOT  # the directory that holds the fastmux under test
LOOP = os.environ.get("FASTMUX_TEST_LOOP") or "fastmux"


def fastmux_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "fastmux", *args]


def child_env(**extra: str) -> Dict[str, str]:
    """The environment of a child that runs ``python -m fastmux``: it imports
    the same fastmux as the tests (the benchmarks' rule: the checkout is put
    on PYTHONPATH, an installed fastmux is not)."""
    env = harness.child_env()
    env.pop("PYTHONWARNINGS", None)  # pytest's "error" filter is for the tests, not the servers
    env.update(extra)
    return env


@dataclass(frozen=True)
class Mode:
    """A backend, trigger and implementation for a server (``c-epoll-edge``,
    ``py-poll``, ...): ``py`` sets FASTMUX_NO_EXTENSIONS=1 in the *server's*
    environment; ``c`` inherits the test process's, so the CI pass that forces
    the fallback runs those on the fallback too."""

    backend: str
    edge: bool = False
    fallback: bool = False

    @property
    def id(self) -> str:
        return f"{'py' if self.fallback else 'c'}-{self.backend}{'-edge' if self.edge else ''}"

    def args(self) -> List[str]:
        return ["--backend", self.backend] + (["--edge"] if self.edge else [])

    def env(self) -> Dict[str, str]:
        return {"FASTMUX_NO_EXTENSIONS": "1"} if self.fallback else {}


# what `fastmux serve` logs before its ready line (fastmux/servers/cli.py)
_IDENTITY = re.compile(r"fastmux (\S+) from (.+) \(core (\w+), reactor (\w+), http (\S+)\)$", re.M)
# stderr lines that mean "something broke inside the server"
_BAD_LOG = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Fatal error|Unhandled|Segmentation")


def expected_identity(kind: str, env: Dict[str, str], http_loaded: bool) -> tuple:
    """(version, package dir, core, reactor, http) that a server started with
    ``env`` must log: this fastmux, with the implementations the tests load
    -- all pure Python where ``env`` sets FASTMUX_NO_EXTENSIONS otherwise than
    the tests' environment does (a ``py`` Mode).  ``http`` is ``-`` where
    the server did not load fastmux.http (only ``serve http`` must)."""
    want_http = kind == "http" or http_loaded
    if env.get("FASTMUX_NO_EXTENSIONS") != os.environ.get("FASTMUX_NO_EXTENSIONS"):
        impls = ["py", "py", "py" if want_http else "-"]
    else:
        http = importlib.import_module("fastmux.http").IMPLEMENTATION if want_http else "-"
        reactor = importlib.import_module("fastmux.reactor").IMPLEMENTATION
        impls = [_pollers.IMPLEMENTATION, reactor, http]
    return (fastmux.__version__, os.path.dirname(os.path.realpath(fastmux.__file__)), *impls)


def check_identity(kind: str, env: Dict[str, str], stderr: str) -> None:
    """Fail unless every ``fastmux serve`` process that logged to ``stderr``
    (the supervisor's workers each log) runs the fastmux under test."""
    found = _IDENTITY.findall(stderr)
    assert found, f"the server did not log which fastmux it runs; stderr:\n{stderr[-4000:]}"
    for version, where, *impls in found:
        got = (version, os.path.realpath(where), *impls)
        want = expected_identity(kind, env, impls[2] != "-")
        assert got == want, (f"the server runs another fastmux than the tests: {got}, not {want} "
                             "(version, package dir, core, reactor, http)")


class Server:
    """``fastmux serve KIND --port 0 ARGS`` (or ``argv``, any command that
    ends up in ``fastmux serve`` and prints its ready line)."""

    def __init__(self, kind: str, *args: str, mode: Optional[Mode] = None, loop: str = LOOP,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None, preexec_fn: Any = None,
                 prefix: Sequence[str] = (), argv: Optional[List[str]] = None, log_level: str = "info",
                 port0: bool = True, timeout: float = 20.0) -> None:
        if argv is None:
            argv = fastmux_cmd("serve", kind)
            if port0 and "--port" not in args and "--unix" not in args:
                argv += ["--port", "0"]
            argv += [*args, *(mode.args() if mode else ()), "--loop", loop, "--log-level", log_level]
        self.argv = list(prefix) + argv
        self.kind = kind
        self.mode = mode
        self.loop = loop
        self.env = child_env(**(mode.env() if mode else {}), **(env or {}))
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            env=self.env, cwd=cwd or str(ROOT), preexec_fn=preexec_fn,
        )
        self.pid = self.proc.pid
        try:
            self.addresses = self._ready(timeout)
            check_identity(kind, self.env, self.stderr())
        except BaseException:
            self.close()
            raise
        self.address = self.addresses[0]

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

    # -- where it listens (the first address) ------------------------------------

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def connect(self, timeout: float = TIMEOUT) -> Any:
        return connect(self, timeout)

    def http(self, timeout: float = TIMEOUT) -> HTTPConnection:
        return HTTPConnection(self.host, self.port, timeout=timeout)

    # -- what /proc says about it ------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None and procs.alive(self.pid)

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
        """Signal it and wait for it to exit: its exit status."""
        kids = procs.descendants(self.pid)
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout}s of {sig!r}:\n{self.stderr()[-4000:]}")
        finally:
            self._note_left(kids)

    def kill(self) -> None:
        kids = procs.descendants(self.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._note_left(kids)

    def _note_left(self, kids: List[int]) -> None:
        """Label the server's processes that outlive it, for the session's
        check that nothing is left running (tests/conftest.py)."""
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        for pid in set(kids) & set(procs.descendants(os.getpid())):
            procs.left_by.setdefault(pid, f"server {self.pid} ({self.kind}), ended during {test}")

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
