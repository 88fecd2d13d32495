"""Benchmark servers and load as pinned subprocesses.

Shared by ``fastmux bench echo``, ``fastmux bench http`` and the scripts in
``bench/``: start a server pinned to one CPU and wait until it serves, stop
it; run the C load generator pinned to another CPU and follow its phase
marks; and the small pieces around that (the child's environment, a free
port, which CPUs to use, medians over rounds).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import site
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import fastmux

__all__ = ["FASTMUX_ROOT", "RunFailed", "Cpus", "uvloop_installed", "csv_choices", "child_env", "free_port",
           "pinned", "pick_cpus", "running_on", "stop", "running_server", "start_announced", "run_loadgen",
           "median_of"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
LOADGEN_SLACK_S = 30.0  # beyond its own run time before the load generator is killed
FASTMUX_ROOT = Path(fastmux.__file__).resolve().parent.parent  # the directory that holds the imported fastmux

# Where a process may run: one CPU, a set of them, or None (or an empty set) for anywhere.
Cpus = Union[int, Set[int], None]


class RunFailed(Exception):
    """A server did not start, died or answered wrongly, or the load failed."""


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def csv_choices(choices: Sequence[str]) -> Callable[[str], List[str]]:
    """An argparse ``type``: a comma-separated, non-empty list from ``choices``."""
    def parse(text: str) -> List[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(choices)}")
        return names

    return parse


def child_env() -> Dict[str, str]:
    """Environment in which ``python -m fastmux ...`` imports this same fastmux.

    From a source checkout the package is not on the child's path unless we
    put it there; an installed fastmux already is, and its site-packages must
    not be pushed ahead of the standard library.
    """
    env = dict(os.environ)
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if FASTMUX_ROOT not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FASTMUX_ROOT), env.get("PYTHONPATH")) if p)
    return env


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pinned(cpus: Cpus) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` pinning the child to ``cpus`` before it execs, so that
    whatever it starts later (threads, nginx's forked worker) is pinned too."""
    cpu_set = {cpus} if isinstance(cpus, int) else set(cpus or ())
    return (lambda: os.sched_setaffinity(0, cpu_set)) if cpu_set else None


def pick_cpus(no_pin: bool) -> Tuple[Optional[int], Optional[int]]:
    """The CPUs for the server and for the load: the first two this process
    may use, or (None, None) when pinning is off or there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 and not no_pin else (None, None)


@contextmanager
def running_on(cpu: Optional[int]) -> Iterator[None]:
    """Keep this process on ``cpu`` (None: leave it be) until the block ends.

    The benchmark itself mostly sleeps, but its wake-ups belong on the load
    generator's CPU, off the server's.
    """
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def stop(proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(path: Path, limit: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no output)"
    return text[-limit:] if text else "(no output)"


def _wait_listening(proc: subprocess.Popen, host: str, port: int, errlog: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RunFailed(f"exited with status {proc.returncode} before listening: {_tail(errlog)}")
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RunFailed(f"not listening on port {port} after {START_TIMEOUT_S:.0f} s") from None
            time.sleep(0.05)


@contextmanager
def running_server(command: Callable[[int, Path], List[str]], host: str, env: Dict[str, str], cpus: Cpus,
                   tmp_parent: Optional[Path] = None) -> Iterator[Tuple[subprocess.Popen, int]]:
    """Start ``command(port, tmp)`` on a free port, with a temporary directory
    of its own, pinned to ``cpus``; yield it and the port once it accepts
    connections; stop it after.  RunFailed if it does not start or dies."""
    port = free_port(host)
    with tempfile.TemporaryDirectory(prefix="fastmux-bench-", dir=tmp_parent) as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx's worker may run as another user and must reach its files here
        errlog = tmp / "stderr"
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(command(port, tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, env=env, preexec_fn=pinned(cpus))
        try:
            _wait_listening(proc, host, port, errlog)
            yield proc, port
            if proc.poll() is not None:
                raise RunFailed(f"exited with status {proc.returncode} during the run: {_tail(errlog)}")
        finally:
            stop(proc)


def start_announced(name: str, argv: List[str], cpus: Cpus) -> Tuple[subprocess.Popen, int]:
    """Start a server that prints ``listening on HOST:PORT`` once it listens
    (as ``fastmux serve`` does with ``--port 0``); return it and its port."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env(),
                            cwd=str(FASTMUX_ROOT), preexec_fn=pinned(cpus))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        stop(proc)
        raise RunFailed(f"{name}: no ready line ({line!r})")
    return proc, int(line.split()[-1].rsplit(":", 1)[1])


def run_loadgen(loadgen: Path, host: str, port: int, args: Sequence[str], budget_s: float,
                on_mark: Callable[[str], None], cpus: Cpus = None,
                allow_conn_errors: bool = False) -> Dict[str, Any]:
    """Run the C load generator against ``host:port``; call ``on_mark`` at its
    phase marks (``start``, ``stop``, ``held``); return its JSON result.
    RunFailed on no result, a mismatched echo or a connection error; with
    ``allow_conn_errors`` connection errors are only counted in the result
    (``errors``, ``established``) as long as some requests were served: with
    thousands of connections some servers drop a share of them, and what the
    kept ones cost is still worth knowing."""
    cmd = [str(loadgen), "--marks", *args, host, str(port)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
    assert proc.stdout is not None and proc.stderr is not None
    # loadgen bounds itself (--timeout); this is only a backstop against a hang.
    killer = threading.Timer(budget_s + LOADGEN_SLACK_S, proc.kill)
    killer.start()
    result: Optional[Dict[str, Any]] = None
    try:
        for line in proc.stdout:
            if line.startswith("#"):
                on_mark(line[1:].strip())
            elif line.strip():
                result = json.loads(line)
        stderr = proc.stderr.read().strip()
        proc.wait()
    finally:
        killer.cancel()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None:
        raise RunFailed(f"load generator exited with status {proc.returncode}: {stderr or 'no result'}")
    # loadgen exits 1 on a mismatch, a connection error or a connection never made.
    tolerated = allow_conn_errors and proc.returncode == 1 and result["requests"] > 0 and not result["mismatches"]
    if (result["mismatches"] or result["errors"] or proc.returncode != 0) and not tolerated:
        raise RunFailed(f"{result['mismatches']} mismatches, {result['errors']} errors, "
                        f"{result['established']}/{result['connections']} connected: {result['first_error']}")
    return result


def median_of(items: Iterable[Any], attr: str) -> float:
    """Median of ``attr`` over ``items``; NaN when there are none."""
    values = [getattr(item, attr) for item in items]
    return statistics.median(values) if values else float("nan")
