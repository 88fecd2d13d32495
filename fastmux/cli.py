"""The ``fastmux`` command line: a thin dispatcher.

Each sub-command lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``.  A module that fails to
import (a missing optional dependency, say) leaves its command reporting why
instead of breaking the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# command -> (module, help).  "bench" has its own second level below.
COMMANDS = {
    "info": ("fastmux.cli_info", "show version, compiled core or fallback, backends, fd limit"),
    "serve": ("fastmux.servers.cli", "run a server: echo, udp-echo, menu, upload, http"),
    "send": ("fastmux.servers.send", "upload a file to an upload server"),
    "client": ("fastmux.servers.client", "interactive tcp/udp line client"),
}
BENCHES = {
    "selectors": ("fastmux.benchmarks.selectors_table", "fastmux vs stdlib selectors vs the kernel floor"),
    "echo": ("fastmux.benchmarks.echo", "echo server CPU per request: fastmux vs asyncio/uvloop/C floor"),
    "http": ("fastmux.benchmarks.http", "HTTP hello-world CPU per request: fastmux vs others"),
}


def _lazy(sub, name: str, module: str, help_: str) -> None:
    p = sub.add_parser(name, help=help_, description=help_)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # a command whose module is unavailable says why when run
        p.set_defaults(_run=lambda args, exc=exc: _unavailable(name, exc))
        return
    mod.add_arguments(p)
    p.set_defaults(_run=mod.run)


def _unavailable(name: str, exc: Exception) -> int:
    print(f"fastmux {name}: unavailable ({exc})", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="fastmux", description="fastmux: a fast I/O multiplexer for Python")
    parser.add_argument("--version", action="version", version=f"fastmux {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        _lazy(sub, name, module, help_)
    bench = sub.add_parser("bench", help="benchmarks against the stdlib", description="benchmarks against the stdlib")
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    for name, (module, help_) in BENCHES.items():
        _lazy(bench_sub, name, module, help_)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
