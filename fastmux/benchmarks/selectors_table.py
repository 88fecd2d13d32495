"""``fastmux bench selectors``: fastmux vs the stdlib vs the kernel floor.

Every figure is a median of interleaved repeats in one process, in ns per
operation: per ``select(0)`` call, per fd for register+unregister, per
``modify``.  Columns: the kernel floor (epoll only, timed by a C loop with
the GIL released), the stdlib's raw ``select`` call, the stdlib selector,
fastmux's selector, then ``fastmux/stdlib`` (time ratio, lower is better)
and ``overhead`` = (fastmux - floor) / (stdlib - floor): the share of the
stdlib's cost above the kernel that fastmux still spends.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

from . import _selector_workloads as w

GRID = [(10, 1), (10, 10), (1000, 1), (1000, 10), (1000, 100), (1000, 1000),
        (10000, 1), (10000, 100), (10000, 1000)]
QUICK_GRID = [(10, 1), (1000, 1), (1000, 100), (1000, 1000)]
OPS_SOCKETS = 1000
SAMPLE_SECONDS = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["epoll", "poll", "select", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per figure (default 7, quick 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def _calibrate(fn: Callable[[], object]) -> int:
    """Calls per sample so that one sample lasts about SAMPLE_SECONDS."""
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= SAMPLE_SECONDS / 4 or loops >= 1 << 20:
            return max(1, int(loops * SAMPLE_SECONDS / max(elapsed, 1e-9)))
        loops *= 4


def _interleaved(candidates: Dict[str, Callable[[], object]], repeats: int, per_call: int) -> Dict[str, float]:
    """Median ns per operation of each candidate, sampled A B C A B C ..."""
    loops = {name: _calibrate(fn) for name, fn in candidates.items()}
    samples: Dict[str, List[float]] = {name: [] for name in candidates}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in candidates.items():
                n = loops[name]
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter_ns() - t0) / (n * per_call))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(v) for name, v in samples.items()}


def _row(workload: str, backend: str, n: Optional[int], k: Optional[int], ns: Dict[str, float],
         floor: Optional[float]) -> dict:
    stdlib, fast = ns["stdlib"], ns["fastmux"]
    row = {"workload": workload, "backend": backend, "N": n, "K": k, "floor_ns": floor,
           "raw_ns": ns.get("raw"), "stdlib_ns": stdlib, "fastmux_ns": fast,
           "ratio": fast / stdlib, "overhead_ratio": None}
    if floor is not None and stdlib > floor:
        row["overhead_ratio"] = (fast - floor) / (stdlib - floor)
    return row


def _select_rows(backend: str, grid, repeats: int, compiled: bool) -> List[dict]:
    rows = []
    for n, k in grid:
        if k > n:
            continue
        socks = w.SocketSet(n, k)
        try:
            if w.select_cannot_watch(backend, socks.socks):
                continue
            candidates = {
                "raw": w.raw_poll_call(backend, socks),
                "stdlib": w.select_call("stdlib", backend, socks),
                "fastmux": w.select_call("fastmux", backend, socks),
            }
            got = {name: len(fn()) for name, fn in candidates.items() if name != "raw"}
            if set(got.values()) != {k}:
                raise RuntimeError(f"expected {k} ready at N={n}, got {got}")
            ns = _interleaved(candidates, repeats, 1)
            floor = w.floor_select_ns(socks, 20000 if n <= 1000 else 2000) if compiled and backend == "epoll" else None
            rows.append(_row("select(0)", backend, n, k, ns, floor))
        finally:
            socks.close()
    return rows


def _ops_rows(backend: str, repeats: int, compiled: bool) -> List[dict]:
    socks = w.SocketSet(OPS_SOCKETS, 1)
    try:
        if w.select_cannot_watch(backend, socks.socks):
            return []
        floors = w.floor_ctl_ns(socks.socks, 20) if compiled and backend == "epoll" else {}
        rows = []
        for workload, make, per_call in (
            ("register+unregister", w.register_unregister_call, len(socks.socks)),
            ("modify", w.modify_call, 2 * len(socks.socks)),
        ):
            candidates = {impl: make(impl, backend, socks.socks) for impl in ("stdlib", "fastmux")}
            ns = _interleaved(candidates, repeats, per_call)
            key = "register_unregister" if workload.startswith("register") else "modify"
            rows.append(_row(workload, backend, OPS_SOCKETS, None, ns, floors.get(key)))
        return rows
    finally:
        socks.close()


def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render(rows: List[dict]) -> str:
    head = f"{'workload':<20} {'backend':<7} {'N':>6} {'K':>5} {'floor':>9} {'raw':>9} {'stdlib':>9} {'fastmux':>9} {'fm/std':>7} {'overhead':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['workload']:<20} {r['backend']:<7} {_fmt(r['N'], 'd'):>6} {_fmt(r['K'], 'd'):>5} "
            f"{_fmt(r['floor_ns'], '.0f'):>9} {_fmt(r['raw_ns'], '.0f'):>9} {r['stdlib_ns']:>9.0f} "
            f"{r['fastmux_ns']:>9.0f} {r['ratio']:>7.2f} {_fmt(r['overhead_ratio'], '.2f'):>8}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import fastmux

    info = fastmux.info()
    compiled = info["compiled"]
    repeats = args.repeats or (3 if args.quick else 7)
    grid = QUICK_GRID if args.quick else GRID
    backends = ["epoll", "poll", "select"] if args.backend == "all" else [args.backend]
    backends = [b for b in backends if b in info["backends"]]
    print(f"fastmux {info['version']} ({'compiled core' if compiled else 'pure-Python fallback'}), "
          f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print("ns per operation, medians of interleaved repeats; floor = kernel alone (C loop); "
          "raw = stdlib select module call\n")
    rows: List[dict] = []
    for backend in backends:
        rows += _select_rows(backend, grid, repeats, compiled)
        rows += _ops_rows(backend, repeats, compiled)
    print(render(rows))
    print("\nfm/std = fastmux time / stdlib time (lower is better); "
          "overhead = (fastmux - floor) / (stdlib - floor)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "python": sys.version, "repeats": repeats, "rows": rows}, f, indent=2)
    return 0
