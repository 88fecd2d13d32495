"""``fastmux serve echo --workers N``: requests/s and server CPU per request, N = 1, 2, ...

    python bench/workers_bench.py                      # workers 1,2; 100 connections; 64 B; 5 s
    python bench/workers_bench.py --workers 1,2,4 --duration 10 --rounds 3
    python bench/workers_bench.py --client python      # no C compiler: a multi-process Python client

The load comes from fastmux's C load generator (``fastmux/benchmarks/load``,
closed loop, every byte verified) when it can be built, else from a small
multi-process Python client.  The server (the supervisor and its workers) is
pinned to CPUs 0..N-1 and the client to the next CPU, when the machine has
that many; otherwise they share and the table says so -- on a 2-core box,
2 workers plus the client need 3 CPUs, so requests/s there cannot show the
scaling that more cores would; the server's CPU per request still compares.
Server CPU is the supervisor plus all its workers (``/proc``), sampled over
the measured interval only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Set, Tuple

# Run against this checkout's fastmux, whether or not one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmux.benchmarks.load import harness  # noqa: E402
from fastmux.benchmarks.load.procstat import CpuTimes, cpu_times  # noqa: E402


def start_server(workers: int, cpus: Optional[Set[int]]) -> Tuple[subprocess.Popen, int]:
    argv = [sys.executable, "-m", "fastmux", "serve", "echo", "--port", "0", "--log-level", "warning"]
    if workers:
        argv += ["--workers", str(workers)]
    return harness.start_announced("server", argv, cpus)


def run_loadgen(loadgen: Path, port: int, conns: int, size: int, duration: float, server_pid: int,
                cpus: Optional[Set[int]]) -> Dict:
    cpu: Dict[str, CpuTimes] = {}

    def on_mark(mark: str) -> None:
        cpu[mark] = cpu_times(server_pid, children=True)  # at "start" and "stop"

    warmup = 1.0
    args = ["-c", str(conns), "-s", str(size), "-d", str(duration), "-w", str(warmup)]
    result = harness.run_loadgen(loadgen, "127.0.0.1", port, args, warmup + duration, on_mark, cpus)
    result["server_cpu_s"] = (cpu["stop"] - cpu["start"]).total
    return result


def _py_client(port: int, conns: int, size: int, duration: float, out) -> None:
    msg = b"x" * size
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [0])
        s.send(msg)
    n = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            got = key.fileobj.recv(65536)
            key.data[0] += len(got)
            if key.data[0] >= size:
                key.data[0] -= size
                n += 1
                key.fileobj.send(msg)
    for s in socks:
        s.close()
    sel.close()
    out.put(n)


def run_python_client(port: int, conns: int, size: int, duration: float, server_pid: int,
                      procs: int, cpus: Optional[Set[int]]) -> Dict:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    per = max(1, conns // procs)
    ps = [ctx.Process(target=_py_client, args=(port, per, size, duration, q)) for _ in range(procs)]
    for p in ps:
        p.start()
        if cpus:
            os.sched_setaffinity(p.pid, cpus)
    time.sleep(0.5)  # connections up
    cpu0 = cpu_times(server_pid, children=True)
    t0 = time.monotonic()
    total = sum(q.get(timeout=duration + 60) for _ in ps)
    elapsed = time.monotonic() - t0 + 0.5
    cpu1 = cpu_times(server_pid, children=True)
    for p in ps:
        p.join(30)
    return {"requests": total, "rps": total / elapsed, "server_cpu_s": (cpu1 - cpu0).total,
            "p50_us": float("nan"), "p99_us": float("nan"), "errors": 0, "mismatches": 0}


def main() -> int:
    parser = argparse.ArgumentParser(prog="workers_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts (default 1,2)")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="message bytes (default 64)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per worker count (median reported)")
    parser.add_argument("--client", choices=("auto", "c", "python"), default="auto")
    parser.add_argument("--client-procs", type=int, default=2, help="processes of the Python client")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    ncpu = len(os.sched_getaffinity(0))

    loadgen = None
    if args.client in ("auto", "c"):
        try:
            from fastmux.benchmarks.load import executable

            loadgen = executable("loadgen")
        except Exception as exc:  # no compiler, no sources: fall back
            if args.client == "c":
                raise
            print(f"C load generator unavailable ({exc}); using the Python client", file=sys.stderr)

    results = []
    for n in counts:
        if n + 1 <= ncpu:
            server_cpus, client_cpus, shared = set(range(n)), {n}, False
        else:
            server_cpus, client_cpus, shared = set(range(min(n, ncpu))), {ncpu - 1}, True
        runs = []
        for r in range(args.rounds):
            proc, port = start_server(n, server_cpus)
            try:
                time.sleep(0.3)
                if loadgen is not None:
                    res = run_loadgen(loadgen, port, args.connections, args.size, args.duration,
                                      proc.pid, client_cpus)
                else:
                    res = run_python_client(port, args.connections, args.size, args.duration,
                                            proc.pid, args.client_procs, client_cpus)
            except harness.RunFailed as exc:
                print(f"  workers={n} round {r + 1}: FAILED {exc}", file=sys.stderr)
                continue
            finally:
                harness.stop(proc, timeout_s=30)
            res["cpu_us_per_req"] = res["server_cpu_s"] / res["requests"] * 1e6
            runs.append(res)
            print(f"  workers={n} round {r + 1}: {res['rps']:9.0f} req/s, server {res['cpu_us_per_req']:.2f} "
                  f"CPU-us/req, p50 {res['p50_us']:.0f} us, p99 {res['p99_us']:.0f} us", file=sys.stderr)
        if runs:
            results.append({
                "workers": n, "server_cpus": sorted(server_cpus), "client_cpus": sorted(client_cpus),
                "shared_cpu": shared, "rps": statistics.median(r["rps"] for r in runs),
                "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in runs),
                "p99_us": statistics.median(r["p99_us"] for r in runs), "rounds": len(runs),
            })
    client = "C loadgen" if loadgen is not None else f"Python client x{args.client_procs}"
    print(f"\necho, {args.connections} connections, {args.size} B messages, {args.duration:g} s x "
          f"{args.rounds} rounds, {client}, {ncpu} CPUs")
    print(f"{'workers':>7s} {'req/s':>10s} {'CPU us/req':>11s} {'p99 us':>8s}  pinning")
    base = results[0]["rps"] if results else 0
    for r in results:
        pin = f"server {r['server_cpus']}, client {r['client_cpus']}" + (" (shared)" if r["shared_cpu"] else "")
        print(f"{r['workers']:7d} {r['rps']:10.0f} {r['cpu_us_per_req']:11.2f} {r['p99_us']:8.0f}  {pin}"
              f"  x{r['rps'] / base:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
