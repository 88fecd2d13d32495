"""The ``fastmux`` command line: a thin dispatcher.

Each sub-command lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``.  That module is imported
only when its command is chosen (see ``_subcommands``), so a command costs
nothing to the others, and one that fails to import (a missing optional
dependency, say) reports why instead of breaking the others.
"""
from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys
from typing import Optional, Sequence

from ._subcommands import Filler, add_subcommands
from ._version import __version__

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


def _command(module: str) -> Filler:
    def fill(parser: argparse.ArgumentParser) -> None:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # whatever the options, that is the answer
            parser.exit(2, f"{parser.prog}: unavailable ({exc})\n")
        # Before add_arguments: a module that adds sub-commands replaces it.
        parser.set_defaults(_run=mod.run)
        mod.add_arguments(parser)

    return fill


def _bench(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, "bench", "WHAT", {name: (help_, _command(module))
                                              for name, (module, help_) in BENCHES.items()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmux", description="fastmux: a fast I/O multiplexer for Python")
    parser.add_argument("--version", action="version", version=f"fastmux {__version__}")
    commands = {name: (help_, _command(module)) for name, (module, help_) in COMMANDS.items()}
    commands["bench"] = ("benchmarks against the stdlib", _bench)
    add_subcommands(parser, "command", "COMMAND", commands)
    return parser


def _stdout_gone() -> bool:
    """Whether stdout's reader has gone away (a pipe whose reader exited)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
            return int(args._run(args) or 0)
        finally:
            sys.stdout.flush()  # here, so a closed pipe is seen below, not at exit
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _stdout_gone():  # a socket's, say: a bug to show
            raise
        # `fastmux info | head -1`: stop quietly, as a tool killed by SIGPIPE
        # would; stdout goes to /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
