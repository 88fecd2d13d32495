"""``fastmux bench echo``: an echo server's own CPU time per request,
fastmux against the C floor, uvloop, asyncio and a stdlib-selectors loop.

Servers: ``floor`` (C epoll), ``fastmux`` (the Reactor with its own
protocol), ``selectors`` (a hand-written stdlib-selectors loop), and three
event loops running the *same* asyncio user code -- ``asyncio`` (stdlib),
``uvloop`` and ``fastmux.asyncio`` (whatever ``fastmux.asyncio.new_event_loop()``
returns).  ``--api`` picks that code, one row per loop and API:
``protocol`` (an ``asyncio.Protocol`` whose ``data_received`` writes back)
and ``streams`` (``asyncio.start_server``, one task per connection reading,
writing and draining until EOF).  Every row also shows its ratio to uvloop
running the same code.

On a small machine a loopback benchmark measures the load generator as much
as the server: the requests/s of fast servers bunch together because the
client is saturated.  So the primary figure is the CPU time the server
process itself spends per request (user, and user+system), read from
/proc/<pid>/stat over exactly the measured interval and divided by the
requests served in it.  Requests/s and p50/p99 latency are reported beside it.

Each run starts a fresh server pinned to one CPU and the C load generator
(which verifies every echoed byte) pinned to another; rounds are interleaved
(every server once per size per round) so slow drifts of the machine hit all
servers alike, and the table shows medians over rounds.  ``--hold N`` adds
the many-connection run: N connections opened and held, the server's RSS per
idle connection and its open fds, then echo traffic round-robin over all of
them, then its open fds again once the connections are closed.
``--connections 10000`` is the many-active-connections run; with
``--allow-conn-errors`` a server that drops some of them is measured on the
ones it kept and the drops are counted, instead of failing the run.

The fastmux server measured is the one a user gets from
``fastmux serve echo --host H --port P``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .load import BuildError, executable
from .load.harness import (RunFailed, child_env, csv_choices, median_of, pick_cpus, run_loadgen,
                                  running_on, running_server, uvloop_installed)
from .load.procstat import CLOCK_TICK_S, CpuTimes, cpu_times, fd_count, rss_bytes, tick_error
from .load.reference_servers import APIS, LOOPS, raise_fd_limit

SERVERS = ("floor", "fastmux", "uvloop", "asyncio", "fastmux.asyncio", "selectors")
# What the servers that are not event loops run, shown where a loop shows its API.
OWN_CODE = {"floor": "C epoll", "fastmux": "Reactor", "selectors": "selectors"}
MIN_RELIABLE_S = 3.0        # below this the 10 ms CPU tick starts to matter
HOLD_IDLE_S = 1.0           # connections sit idle this long in a hold run...
HOLD_SETTLE_S = 0.5         # ...and the server's RSS is read this far into it
FDS_SETTLE_S = 2.0          # the longest a server may take to close its side after the client's
FDS_STEADY_S = 0.5          # an fd count unchanged this long is the server's baseline


def _default_servers() -> List[str]:
    return [s for s in SERVERS if s != "uvloop" or uvloop_installed()]


def _csv_ints(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=_csv_ints, default=[64, 1024, 16384], metavar="N,N,...",
                        help="message sizes in bytes (default 64,1024,16384)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown (default 3)")
    parser.add_argument("--servers", type=csv_choices(SERVERS), default=None, metavar="A,B,...",
                        help=f"servers to run, from {', '.join(SERVERS)} "
                             "(default: all; uvloop only when installed)")
    parser.add_argument("--api", type=csv_choices(APIS), default=[APIS[0]], metavar="A,B",
                        help=f"the asyncio code the event loops ({', '.join(LOOPS)}) run, from "
                             f"{', '.join(APIS)}; one row per loop and API (default {APIS[0]})")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to use (default 127.0.0.1)")
    parser.add_argument("--hold", type=int, default=0, metavar="N",
                        help="also hold N connections (e.g. 10000): RSS per idle connection, open fds, "
                             "then traffic over all of them (default: off)")
    parser.add_argument("--hold-rate", type=float, default=20000.0, metavar="MSG/S",
                        help="messages/s round-robin over the held connections (default 20000)")
    parser.add_argument("--hold-size", type=int, default=64, help="message size in hold runs (default 64)")
    parser.add_argument("--allow-conn-errors", action="store_true",
                        help="count connection errors instead of failing the run (for runs with "
                             "thousands of connections); a wrong echoed byte still fails it")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to CPUs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every run and the medians here")


# ---- the servers ----


@dataclass
class Setup:
    host: str
    loadgen: Path
    floor: Optional[Path]
    server_cpu: Optional[int]
    load_cpu: Optional[int]
    env: Dict[str, str]


def server_command(name: str, api: str, setup: Setup, port: int) -> List[str]:
    if name == "floor":
        assert setup.floor is not None
        return [str(setup.floor), setup.host, str(port)]
    if name == "fastmux":
        return [sys.executable, "-m", "fastmux", "serve", "echo", "--host", setup.host, "--port", str(port)]
    cmd = [sys.executable, "-m", "fastmux.benchmarks.load.reference_servers", name,
           "--host", setup.host, "--port", str(port)]
    return cmd + (["--api", api] if name in LOOPS else [])


# ---- one measured run ----


@dataclass
class Run:
    server: str
    api: str                        # for a loop one of APIS, else what the server runs (OWN_CODE)
    size: int
    round: int
    connections: int
    hold: bool = False              # a many-connection run
    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    user_us: float = 0.0            # server user CPU µs per request
    total_us: float = 0.0           # server user+system CPU µs per request
    server_user_s: float = 0.0      # server CPU seconds over the measured interval
    server_cpu_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    p999_us: float = 0.0
    client_busy: float = 0.0        # load generator CPU / wall time while measuring
    rss_base: int = 0               # hold runs: server RSS before any connection...
    rss_idle: int = 0               # ...with every connection open and idle...
    rss_loaded: int = 0             # ...and at the end of the traffic
    fds_base: int = 0               # hold runs: server's open fds before any connection...
    fds_idle: int = 0               # ...with every connection open...
    fds_after: int = 0              # ...and once the client has closed them all
    conn_errors: int = 0            # connections that failed (only with --allow-conn-errors)
    established: int = 0
    error: Optional[str] = None
    loadgen: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.server}/{self.api}" if self.server in LOOPS else self.server

    @property
    def rss_per_conn(self) -> float:
        return (self.rss_idle - self.rss_base) / self.connections


def _fds_settled(pid: int, base: Optional[int] = None) -> int:
    """The server's open fds once they are back to ``base`` (None: once they
    have stayed the same for FDS_STEADY_S), or after FDS_SETTLE_S.

    The baseline needs the wait: the harness's readiness probe has just
    connected and closed, and the server may still hold its end.
    """
    now = time.monotonic()
    deadline, steady_since, last = now + FDS_SETTLE_S, now, fd_count(pid)
    while True:
        time.sleep(0.05)
        fds, now = fd_count(pid), time.monotonic()
        if fds != last:
            steady_since, last = now, fds
        if (fds <= base if base is not None else now - steady_since >= FDS_STEADY_S) or now > deadline:
            return fds


def measure(setup: Setup, run: Run, loadgen_args: List[str], budget_s: float, allow_conn_errors: bool) -> None:
    """Run the load against a fresh ``run.server``; fill in ``run``."""
    def command(port: int, _tmp: Path) -> List[str]:
        return server_command(run.server, run.api, setup, port)

    with running_server(command, setup.host, setup.env, setup.server_cpu) as (proc, port):
        pid = proc.pid
        cpu: Dict[str, CpuTimes] = {}
        if run.hold:
            run.fds_base = _fds_settled(pid)
            run.rss_base = rss_bytes(pid)

        def on_mark(mark: str) -> None:
            try:
                if mark == "held" and run.hold:
                    time.sleep(HOLD_SETTLE_S)  # inside the load generator's HOLD_IDLE_S idle period
                    run.rss_idle = rss_bytes(pid)
                    run.fds_idle = fd_count(pid)
                elif mark == "start":
                    cpu["start"] = cpu_times(pid, children=True)
                elif mark == "stop":
                    cpu["stop"] = cpu_times(pid, children=True)
                    if run.hold:
                        run.rss_loaded = rss_bytes(pid)
            except OSError as exc:
                raise RunFailed(f"server process vanished during the run ({exc})") from None

        result = run_loadgen(setup.loadgen, setup.host, port, loadgen_args, budget_s, on_mark, setup.load_cpu,
                             allow_conn_errors)
        if run.hold:
            run.fds_after = _fds_settled(pid, run.fds_base)
    used = cpu["stop"] - cpu["start"]
    run.loadgen = result
    run.conn_errors = result["errors"]
    run.established = result["established"]
    run.requests = result["requests"]
    run.duration_s = result["duration_s"]
    run.rps = result["rps"]
    run.p50_us, run.p99_us, run.p999_us = result["p50_us"], result["p99_us"], result["p999_us"]
    run.server_user_s = used.user
    run.server_cpu_s = used.total
    run.client_busy = result["client_cpu_s"] / run.duration_s if run.duration_s else 0.0
    if run.requests:
        run.user_us = used.user / run.requests * 1e6
        run.total_us = used.total / run.requests * 1e6


# ---- the report ----


def _size_label(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def row_keys(servers: List[str], apis: List[str]) -> List[Tuple[str, str]]:
    """(server, api) of every row in table order: the servers that run their
    own code, then for each API the event loops that run it."""
    keys = [(name, OWN_CODE[name]) for name in servers if name not in LOOPS]
    return keys + [(name, api) for api in apis for name in servers if name in LOOPS]


def summarize(runs: List[Run], keys: List[Tuple[str, str]], sizes: List[int]) -> List[Dict[str, Any]]:
    """Medians over rounds for each (size, server, api) with at least one good run."""
    out = []
    for size in sizes:
        for name, api in keys:
            good = [r for r in runs if (r.server, r.api, r.size) == (name, api, size) and r.error is None]
            if not good:
                continue
            row: Dict[str, Any] = {"server": name, "api": api, "size": size, "runs": len(good)}
            for attr in ("rps", "user_us", "total_us", "p50_us", "p99_us", "client_busy", "server_cpu_s",
                         "rss_base", "rss_idle", "rss_loaded", "rss_per_conn", "fds_base", "fds_idle",
                         "fds_after", "conn_errors", "established"):
                row[attr] = median_of(good, attr)
            out.append(row)
    return out


def _uvloop_row(rows: List[Dict[str, Any]], row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """uvloop running the same code as ``row``; for the servers with code of
    their own, uvloop's protocol row, the shape closest to theirs."""
    api = row["api"] if row["server"] in LOOPS else "protocol"
    found = next((r for r in rows if r["server"] == "uvloop" and r["api"] == api), None)
    return None if found is row else found


def print_table(summary: List[Dict[str, Any]], sizes: List[int]) -> None:
    head = (f"{'size':>7}  {'server':<15} {'code':<9} {'req/s':>9} {'user µs/req':>12} {'u+s µs/req':>11} "
            f"{'p50 µs':>8} {'p99 µs':>8}  {'fastmux÷this':>13}  {'this÷uvloop u / u+s / req/s':>27}")
    print(head)
    print("-" * len(head))
    for size in sizes:
        rows = [r for r in summary if r["size"] == size]
        fm = next((r for r in rows if r["server"] == "fastmux"), None)
        for i, r in enumerate(rows):
            ratio = "" if r["server"] == "fastmux" or fm is None else \
                f"{_ratio(fm['user_us'], r['user_us'])} / {_ratio(fm['total_us'], r['total_us'])}"
            uv = _uvloop_row(rows, r)
            vs_uvloop = "" if uv is None else (f"{_ratio(r['user_us'], uv['user_us'])} / "
                                               f"{_ratio(r['total_us'], uv['total_us'])} / "
                                               f"{_ratio(r['rps'], uv['rps'])}")
            print(f"{_size_label(size) if i == 0 else '':>7}  {r['server']:<15} {r['api']:<9} {r['rps']:>9,.0f} "
                  f"{r['user_us']:>12.2f} {r['total_us']:>11.2f} {r['p50_us']:>8.0f} {r['p99_us']:>8.0f}"
                  f"  {ratio:>13}  {vs_uvloop:>27}")


def print_hold_table(summary: List[Dict[str, Any]]) -> None:
    head = (f"{'server':<15} {'code':<9} {'RSS base':>9} {'RSS idle':>9} {'KiB/conn':>9} {'RSS load':>9} "
            f"{'fds base/idle/after':>19} {'req/s':>8} {'user µs/req':>12} {'u+s µs/req':>11} "
            f"{'p50 µs':>8} {'p99 µs':>8}")
    print(head)
    print("-" * len(head))
    mib = 1 << 20
    for r in summary:
        fds = f"{r['fds_base']:.0f}/{r['fds_idle']:.0f}/{r['fds_after']:.0f}"
        print(f"{r['server']:<15} {r['api']:<9} {r['rss_base'] / mib:>7.1f}Mi {r['rss_idle'] / mib:>7.1f}Mi "
              f"{r['rss_per_conn'] / 1024:>9.2f} {r['rss_loaded'] / mib:>7.1f}Mi {fds:>19} {r['rps']:>8,.0f} "
              f"{r['user_us']:>12.2f} {r['total_us']:>11.2f} {r['p50_us']:>8.0f} {r['p99_us']:>8.0f}")


def _print_conn_errors(summary: List[Dict[str, Any]], connections: int) -> None:
    for r in summary:
        if r["conn_errors"]:
            print(f"{r['server']} {r['api']} at {_size_label(r['size'])}: {r['conn_errors']:.0f} connection "
                  f"errors (median), {r['established']:.0f} of {connections} connections established; "
                  "its figures are over the requests it served.")


def _print_notes(good: List[Run], duration: float) -> None:
    if not good:
        return
    worst_total = max(tick_error(r.server_cpu_s) for r in good)
    coarsest = min(good, key=lambda r: r.server_user_s)
    ticks = round(coarsest.server_user_s / CLOCK_TICK_S)
    user_note = (f"±{tick_error(coarsest.server_user_s):.0%}" if ticks else "not measurable")
    print(f"CPU from /proc/<pid>/stat counts {CLOCK_TICK_S * 1e3:.0f} ms ticks: a user+sys figure here "
          f"is good to ±{worst_total:.1%} or better; the coarsest user figure ({coarsest.name} at "
          f"{_size_label(coarsest.size)}, {ticks} ticks) to {user_note}.")
    if duration < MIN_RELIABLE_S:
        print(f"warning: {duration:g} s runs are too short for CPU-tick accuracy; use --duration "
              f"{MIN_RELIABLE_S:g} or more for figures to rely on.")
    busy = [r.client_busy for r in good]
    if max(busy) > 0.9:
        print(f"The load generator used {min(busy):.0%}-{max(busy):.0%} of its CPU: req/s is bounded "
              "by it, which is why CPU per request is the figure to compare.")


# ---- the command ----


def _plan(args: argparse.Namespace, keys: List[Tuple[str, str]]) -> List[Tuple[Run, List[str], float]]:
    """Every run with its load generator arguments and time budget, rounds
    interleaved: each round runs every row's server once per size."""
    common = ["-w", str(args.warmup), "-d", str(args.duration)]
    budget = args.warmup + args.duration
    plan = []
    for rnd in range(1, args.rounds + 1):
        for size in args.sizes:
            for name, api in keys:
                plan.append((Run(name, api, size, rnd, args.connections),
                             ["-c", str(args.connections), "-s", str(size), *common], budget))
        if args.hold:
            for name, api in keys:
                plan.append((Run(name, api, args.hold_size, rnd, args.hold, hold=True),
                             ["-c", str(args.hold), "-s", str(args.hold_size), "--hold", str(HOLD_IDLE_S),
                              "--rate", str(args.hold_rate), *common], budget + HOLD_IDLE_S))
    return plan


def _execute(plan: List[Tuple[Run, List[str], float]], setup: Setup,
             allow_conn_errors: bool) -> Tuple[List[Run], Dict[str, str]]:
    """Measure every planned run; a row whose server fails once is left out after."""
    runs: List[Run] = []
    failed: Dict[str, str] = {}
    for run_, loadgen_args, budget in plan:
        if run_.name in failed:
            continue
        shape = f"{run_.connections} held" if run_.hold else f"{run_.connections} conns"
        label = f"round {run_.round}  {run_.name:<24}  {_size_label(run_.size):>6}  {shape}"
        try:
            measure(setup, run_, loadgen_args, budget, allow_conn_errors)
        except RunFailed as exc:
            run_.error = failed[run_.name] = str(exc)
            print(f"{label}: FAILED: {run_.error}", file=sys.stderr)
        else:
            errors = f", {run_.conn_errors} connection errors" if run_.conn_errors else ""
            print(f"{label}: {run_.rps:,.0f} req/s, {run_.user_us:.2f} user µs/req, "
                  f"p99 {run_.p99_us:.0f} µs{errors}", file=sys.stderr)
        runs.append(run_)
    return runs, failed


def run(args: argparse.Namespace) -> int:
    servers: List[str] = args.servers or _default_servers()
    if "uvloop" in servers and not uvloop_installed():
        print("fastmux bench echo: uvloop is not installed (pip install uvloop)", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.hold < 0:
        print("fastmux bench echo: --rounds, --duration and --connections must be positive", file=sys.stderr)
        return 2
    try:
        loadgen = executable("loadgen")
        floor = executable("echo_floor") if "floor" in servers else None
    except BuildError as exc:
        print(f"fastmux bench echo: {exc}", file=sys.stderr)
        return 2
    need_fds = max(args.connections, args.hold) + 64
    if raise_fd_limit() < need_fds:  # servers inherit the raised limit
        print(f"fastmux bench echo: {need_fds} file descriptors needed; raise the hard limit "
              "(ulimit -Hn) or use fewer connections", file=sys.stderr)
        return 2

    server_cpu, load_cpu = pick_cpus(args.no_pin)
    setup = Setup(args.host, loadgen, floor, server_cpu, load_cpu, child_env())
    keys = row_keys(servers, args.api)
    print(f"echo: {len(keys)} servers x {len(args.sizes)} sizes x {args.rounds} round(s), "
          f"{args.duration:g} s measured per run; server on CPU {server_cpu}, load generator on CPU {load_cpu}",
          file=sys.stderr)
    with running_on(load_cpu):
        runs, failed = _execute(_plan(args, keys), setup, args.allow_conn_errors)
    summary = summarize([r for r in runs if not r.hold], keys, args.sizes)
    hold_summary = summarize([r for r in runs if r.hold], keys, [args.hold_size])

    print(f"\nEcho server CPU per request: {args.connections} connections, {args.duration:g} s measured "
          f"after {args.warmup:g} s warm-up, median of {args.rounds} round(s)")
    if server_cpu is not None:
        print(f"(server pinned to CPU {server_cpu}, load generator to CPU {load_cpu})")
    print("fastmux÷this: user / user+sys, below 1 means fastmux spends less.  this÷uvloop: against uvloop "
          "running the same code, CPU below 1 spends less, req/s above 1 serves more.")
    print()
    print_table(summary, args.sizes)
    _print_conn_errors(summary, args.connections)
    if args.hold:
        print(f"\nHolding {args.hold} connections: RSS per idle connection above the server's baseline and "
              f"open fds, then {_size_label(args.hold_size)} at {args.hold_rate:g} msg/s round-robin over "
              "all of them, then open fds once the client has closed them")
        print()
        print_hold_table(hold_summary)
        _print_conn_errors(hold_summary, args.hold)
    print()
    _print_notes([r for r in runs if r.error is None], args.duration)
    for name, why in failed.items():
        print(f"{name}: FAILED, left out: {why}")

    if args.json:
        doc = {
            "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                          if not k.startswith("_") and k not in ("command", "bench")},
                       "servers": servers},
            "environment": {"python": sys.version, "platform": platform.platform(),
                            "cpus": len(os.sched_getaffinity(0)), "server_cpu": server_cpu, "load_cpu": load_cpu,
                            "clock_tick_s": CLOCK_TICK_S},
            "runs": [asdict(r) for r in runs],
            "summary": summary,
            "hold_summary": hold_summary,
            "failed": failed,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0
