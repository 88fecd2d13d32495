"""The benchmark load tools: the C load generator and floor server, /proc
readings, the reference servers, and ``fastmux bench echo`` end to end.

The load generator's job is to catch a wrong echo, so most of the value here
is in the misbehaving servers: each must make it fail.
"""
from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from fastmux.benchmarks import echo
from fastmux.benchmarks.load import TOOLS, CompilerNotFound, build, executable, reference_servers
from fastmux.benchmarks.load.harness import RunFailed, free_port, run_loadgen as harness_run_loadgen, \
    uvloop_installed
from fastmux.benchmarks.load.procstat import CLOCK_TICK_S, cpu_times, fd_count, rss_bytes, tick_error
from support.server import child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll and /proc are Linux-only")


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTMUX_CACHE", str(tmp_path_factory.mktemp("cache")))
        try:
            return {name: executable(name) for name in TOOLS}
        except CompilerNotFound as exc:
            pytest.skip(f"no C compiler: {exc}")


def run_loadgen(tools: Dict[str, Path], port: int, *args: str) -> Tuple[int, Dict[str, Any], List[str]]:
    """Run loadgen with --marks; return its status, its JSON and the marks."""
    proc = subprocess.run([str(tools["loadgen"]), "--marks", *args, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30)
    lines = proc.stdout.splitlines()
    marks = [line[1:] for line in lines if line.startswith("#")]
    return proc.returncode, json.loads(lines[-1]), marks


@pytest.fixture
def floor(tools: Dict[str, Path]) -> Iterator[int]:
    proc = subprocess.Popen([str(tools["echo_floor"]), "127.0.0.1", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "ready"
        yield int(ready[2])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0  # a clean exit on SIGTERM
        proc.stdout.close()  # type: ignore[union-attr]


def test_sources_compile_without_warnings(tmp_path: Path) -> None:
    try:
        cc = build._compiler()
    except CompilerNotFound as exc:
        pytest.skip(f"no C compiler: {exc}")
    for name in TOOLS:
        subprocess.run([*cc, *build.CFLAGS, "-Werror", "-o", str(tmp_path / name),
                        str(Path(build.__file__).with_name(f"{name}.c"))], check=True, timeout=120)


def test_build_is_cached(tools: Dict[str, Path]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTMUX_CACHE", str(tools["loadgen"].parent.parent))
        assert executable("loadgen") == tools["loadgen"]


def test_loadgen_against_floor(tools: Dict[str, Path], floor: int) -> None:
    rc, out, marks = run_loadgen(tools, floor, "-c", "8", "-s", "3000", "-d", "0.5", "-w", "0.1")
    assert rc == 0, out
    assert marks == ["held", "start", "stop"]
    assert out["established"] == 8
    assert out["requests"] > 0
    assert out["mismatches"] == 0 and out["errors"] == 0 and out["first_error"] is None
    assert out["bytes"] == out["requests"] * 3000
    assert 0 < out["p50_us"] <= out["p99_us"] <= out["p999_us"] <= out["max_us"]


def test_loadgen_request_count_and_tiny_messages(tools: Dict[str, Path], floor: int) -> None:
    rc, out, _ = run_loadgen(tools, floor, "-c", "3", "-s", "1", "-n", "500", "-w", "0")
    assert rc == 0, out
    assert out["requests"] >= 500 and out["mismatches"] == 0


def test_loadgen_hold_and_rate(tools: Dict[str, Path], floor: int) -> None:
    rc, out, marks = run_loadgen(tools, floor, "-c", "200", "--hold", "0.2", "--rate", "1000",
                                 "-d", "0.5", "-w", "0")
    assert rc == 0, out
    assert marks == ["held", "start", "stop"]
    assert out["established"] == 200 and out["rate"] == 1000
    assert out["requests"] > 0 and out["mismatches"] == 0


def test_loadgen_reports_refused_connections(tools: Dict[str, Path]) -> None:
    port = free_port("127.0.0.1")  # nothing listens on it
    rc, out, _ = run_loadgen(tools, port, "-c", "4", "-d", "0.2", "-w", "0")
    assert rc == 1
    assert out["errors"] == 4 and out["established"] == 0
    assert "refused" in out["first_error"]


class BadEchoServer:
    """An echo server that gets it wrong in one way:

    flip       flips one bit of the 100th byte of each connection's stream;
    duplicate  echoes one byte too many;
    swap       sends each connection's bytes to the other connection;
    drop       closes every second connection it accepts, and echoes on the others.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        conns: List[socket.socket] = []
        seen: Dict[socket.socket, int] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            while not self.stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    sock = key.fileobj
                    if sock is self.listener:
                        conn, _ = self.listener.accept()
                        if self.mode == "drop" and len(conns) % 2:
                            conns.append(conn)
                            conn.close()
                            continue
                        conn.settimeout(2)
                        conns.append(conn)
                        seen[conn] = 0
                        sel.register(conn, selectors.EVENT_READ)
                        continue
                    assert isinstance(sock, socket.socket)
                    try:
                        data = bytearray(sock.recv(65536))
                    except OSError:  # reset by the load generator after it spotted the error
                        data = bytearray()
                    if not data:
                        sel.unregister(sock)
                        continue
                    target = sock
                    if self.mode == "flip" and seen[sock] <= 100 < seen[sock] + len(data):
                        data[100 - seen[sock]] ^= 0x01
                    elif self.mode == "duplicate":
                        data += data[-1:]
                    elif self.mode == "swap":
                        target = conns[(conns.index(sock) + 1) % len(conns)]
                    seen[sock] += len(data)
                    try:
                        target.sendall(data)
                    except OSError:
                        pass  # the load generator closed it after spotting the error
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.mark.parametrize("mode", ["flip", "duplicate", "swap"])
def test_loadgen_detects_a_bad_echo(tools: Dict[str, Path], mode: str) -> None:
    server = BadEchoServer(mode)
    try:
        rc, out, _ = run_loadgen(tools, server.port, "-c", "2", "-s", "300", "-d", "0.3", "-w", "0",
                                 "--timeout", "1")
    finally:
        server.close()
    assert rc == 1
    assert out["mismatches"] >= 1, out
    assert out["first_error"]


def test_run_loadgen_counts_dropped_connections_only_when_allowed(tools: Dict[str, Path]) -> None:
    server = BadEchoServer("drop")
    args = ["-c", "6", "-s", "100", "-d", "0.3", "-w", "0", "--timeout", "1"]
    try:
        with pytest.raises(RunFailed, match="3/6 connected"):
            harness_run_loadgen(tools["loadgen"], "127.0.0.1", server.port, args, 5.0, lambda mark: None)
        out = harness_run_loadgen(tools["loadgen"], "127.0.0.1", server.port, args, 5.0, lambda mark: None,
                                  allow_conn_errors=True)
    finally:
        server.close()
    assert out["errors"] == 3 and out["established"] == 3
    assert out["requests"] > 0 and out["mismatches"] == 0


def test_run_loadgen_allowing_errors_still_fails_with_nothing_served(tools: Dict[str, Path]) -> None:
    port = free_port("127.0.0.1")  # nothing listens on it
    with pytest.raises(RunFailed, match="refused"):
        harness_run_loadgen(tools["loadgen"], "127.0.0.1", port, ["-c", "2", "-d", "0.2", "-w", "0"], 5.0,
                            lambda mark: None, allow_conn_errors=True)


# ---- /proc readings ----


def test_procstat_cpu_times_match_os_times() -> None:
    end = time.process_time() + 0.1
    while time.process_time() < end:  # spend some CPU so there are ticks to see
        pass
    mine, ref = cpu_times(os.getpid()), os.times()
    # /proc truncates to whole ticks, and os.times() was read a moment later
    assert ref.user - 2 * CLOCK_TICK_S <= mine.user <= ref.user + CLOCK_TICK_S
    assert ref.system - 2 * CLOCK_TICK_S <= mine.system <= ref.system + CLOCK_TICK_S
    assert mine.total == mine.user + mine.system


def test_procstat_counts_live_children() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint(1, flush=True)\ntime.sleep(10)"
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # it has burnt its CPU and is now sleeping
        extra = cpu_times(os.getpid(), children=True).total - cpu_times(os.getpid()).total
        assert extra >= 0.25
    finally:
        child.kill()
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]


def test_procstat_fd_count() -> None:
    before = fd_count(os.getpid())
    a, b = socket.socketpair()
    try:
        assert fd_count(os.getpid()) == before + 2
    finally:
        a.close()
        b.close()
    assert fd_count(os.getpid()) == before


def test_procstat_rss_and_tick_error() -> None:
    assert 1 << 20 < rss_bytes(os.getpid()) < 1 << 36
    assert tick_error(2.0) == pytest.approx(CLOCK_TICK_S)
    assert tick_error(0.0) == float("inf")
    with pytest.raises(OSError):
        rss_bytes(2**22 + 12345)  # above the default pid_max: no such process


# ---- reference servers and the benchmark command ----


_UVLOOP = pytest.mark.skipif(not uvloop_installed(), reason="uvloop is not installed")


@pytest.mark.parametrize("kind, api", [
    ("asyncio", []), ("selectors", []), ("asyncio", ["--api", "streams"]),
    ("fastmux.asyncio", ["--api", "protocol"]), ("fastmux.asyncio", ["--api", "streams"]),
    pytest.param("uvloop", ["--api", "streams"], marks=_UVLOOP),
])
def test_reference_server_echoes_and_stops(tools: Dict[str, Path], kind: str, api: List[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fastmux.benchmarks.load.reference_servers", kind, *api,
                             "--port", "0"], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "ready"
        fds_before = fd_count(proc.pid)
        # 20 000 B messages take several reads and writes each: streams must drain.
        rc, out, _ = run_loadgen(tools, int(ready[2]), "-c", "20", "-s", "20000", "-d", "0.3", "-w", "0")
        assert rc == 0, out
        assert out["requests"] > 0
        deadline = time.monotonic() + 5
        while fd_count(proc.pid) > fds_before and time.monotonic() < deadline:
            time.sleep(0.05)  # the server closes its side once it reads the client's EOF
        assert fd_count(proc.pid) == fds_before
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        proc.stdout.close()  # type: ignore[union-attr]


def test_reference_selectors_server_takes_no_api() -> None:
    with pytest.raises(SystemExit) as exc:
        reference_servers.main(["selectors", "--api", "streams", "--port", "0"])
    assert exc.value.code == 2


def test_fastmux_asyncio_loop_is_looked_up_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks measure whatever fastmux.asyncio.new_event_loop returns
    at run time, so swapping in a new loop needs no change here."""
    import asyncio

    import fastmux.asyncio

    made: List[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        made.append(asyncio.SelectorEventLoop())
        return made[-1]

    monkeypatch.setattr(fastmux.asyncio, "new_event_loop", factory)
    loop = reference_servers.new_event_loop("fastmux.asyncio")
    try:
        assert made == [loop]
    finally:
        loop.close()
    with pytest.raises(ValueError, match="unknown event loop"):
        reference_servers.new_event_loop("tokio")


def test_echo_rows_compare_each_loop_with_uvloop_running_the_same_code(capsys: pytest.CaptureFixture[str]) -> None:
    keys = echo.row_keys(["fastmux", "uvloop", "fastmux.asyncio", "selectors"], ["protocol", "streams"])
    assert keys == [("fastmux", "Reactor"), ("selectors", "selectors"), ("uvloop", "protocol"),
                    ("fastmux.asyncio", "protocol"), ("uvloop", "streams"), ("fastmux.asyncio", "streams")]
    # (user µs, user+sys µs, req/s) per row
    figures = [(1.0, 2.0, 300.0), (4.0, 5.0, 100.0), (2.0, 4.0, 200.0), (1.0, 3.0, 250.0), (4.0, 8.0, 100.0),
               (3.0, 4.0, 150.0)]
    echo.print_table([{"server": name, "api": api, "size": 64, "user_us": user, "total_us": total, "rps": rps,
                       "p50_us": 1.0, "p99_us": 2.0} for (name, api), (user, total, rps) in zip(keys, figures)],
                     [64])
    lines = capsys.readouterr().out.splitlines()

    def line(server: str, api: str) -> str:
        return next(text for text in lines if re.search(rf"\s{re.escape(server)}\s+{api}\s", text))

    # this÷uvloop, user / user+sys / req/s: against uvloop running the same
    # API; the servers with code of their own against uvloop's protocol row
    assert line("fastmux.asyncio", "protocol").endswith("0.50 / 0.75 / 1.25")
    assert line("fastmux.asyncio", "streams").endswith("0.75 / 0.50 / 1.50")
    assert line("selectors", "selectors").endswith("2.00 / 1.25 / 0.50")
    assert line("uvloop", "protocol").rstrip().endswith("0.50 / 0.50")  # fastmux÷this; nothing against itself


def test_bench_echo_end_to_end(tools: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastmux.cli import main

    report = tmp_path / "echo.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTMUX_CACHE", str(tools["loadgen"].parent.parent))
        rc = main(["bench", "echo", "--servers", "floor,selectors", "--sizes", "64", "--duration", "0.3",
                   "--warmup", "0", "--rounds", "1", "--connections", "10", "--hold", "100",
                   "--hold-rate", "1000", "--json", str(report)])
    assert rc == 0
    doc = json.loads(report.read_text())
    assert [r["server"] for r in doc["summary"]] == ["floor", "selectors"]
    assert all(r["rps"] > 0 for r in doc["summary"])
    assert [r["server"] for r in doc["hold_summary"]] == ["floor", "selectors"]
    assert all(r["rss_idle"] > 0 for r in doc["hold_summary"])
    out = capsys.readouterr().out
    assert "user µs/req" in out and "10 ms ticks" in out and "too short" in out


def test_bench_echo_api_rows_and_held_fds(tools: Dict[str, Path], tmp_path: Path) -> None:
    from fastmux.cli import main

    report = tmp_path / "echo.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTMUX_CACHE", str(tools["loadgen"].parent.parent))
        rc = main(["bench", "echo", "--servers", "asyncio,fastmux.asyncio", "--api", "protocol,streams",
                   "--sizes", "1024", "--duration", "0.3", "--warmup", "0", "--rounds", "1", "--connections", "10",
                   "--hold", "50", "--hold-rate", "1000", "--json", str(report)])
    assert rc == 0
    doc = json.loads(report.read_text())
    rows = [("asyncio", "protocol"), ("fastmux.asyncio", "protocol"), ("asyncio", "streams"),
            ("fastmux.asyncio", "streams")]
    assert [(r["server"], r["api"]) for r in doc["summary"]] == rows
    assert [(r["server"], r["api"]) for r in doc["hold_summary"]] == rows
    for run in doc["runs"]:
        assert run["error"] is None and run["requests"] > 100, run
        assert run["loadgen"]["mismatches"] == 0 and run["conn_errors"] == 0, run
    for row in doc["summary"]:
        assert row["rps"] > 0 and row["total_us"] >= row["user_us"] >= 0, row
    for row in doc["hold_summary"]:
        assert row["fds_idle"] >= row["fds_base"] + 50, row  # one fd per held connection
        assert row["fds_after"] <= row["fds_base"], row      # all closed again
        assert row["rss_idle"] > 0, row
