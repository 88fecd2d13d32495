"""Echo server benchmark: the same as ``fastmux bench echo``, runnable from a checkout.

    python bench/echo_bench.py                      # defaults: 64 B, 1 KiB, 16 KiB; 100 connections
    python bench/echo_bench.py --duration 3 --rounds 1
    python bench/echo_bench.py --hold 10000         # also the many-connection run
    python bench/echo_bench.py --servers floor,asyncio --json out.json
    python bench/echo_bench.py --api protocol,streams  # asyncio, uvloop, fastmux.asyncio: same user code
    python bench/echo_bench.py --api protocol --sizes 64 --connections 10000 --allow-conn-errors

Notes
-----
* The figure to compare is the server's own CPU time per request (user, and
  user+system), not requests/s: on a 2-core box the load generator saturates
  its core first, so the requests/s of fast servers bunch together.  The
  README's echo table holds measured figures.
* Server and load generator are pinned to different CPUs; the benchmark's own
  process sits on the load generator's CPU.  On a shared machine, whatever
  else runs on the server's CPU inflates latency and lowers requests/s, but
  hardly moves CPU time per request, which is why that is the primary figure.
* /proc CPU times count 10 ms ticks, and the user/system split is itself
  sampled at the tick: runs of at least 3 s keep user+sys figures within a
  percent or so.  The C floor's user time is only a few ticks per run, so its
  user figure is coarse; the output says how coarse.
* The load generator (fastmux/benchmarks/load/loadgen.c) verifies every echoed
  byte; a run with a mismatch or a connection error is reported as failed and
  left out of the medians.
* The C tools are compiled on first use into $FASTMUX_CACHE (default
  ~/.cache/fastmux); a C compiler is needed.
"""
import argparse
import sys
from pathlib import Path

# Run against this checkout's fastmux, whether or not one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmux.benchmarks import echo  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="echo_bench.py", description="echo server CPU per request")
    echo.add_arguments(parser)
    return echo.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
