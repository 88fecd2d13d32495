"""``fastmux serve KIND``: the options, then ``launch.run_kind``.

    fastmux serve KIND [--host H] [--port P ...] [--unix PATH ...]
                       [--backend epoll|poll|select] [--edge] [--workers N]
                       [--grace SECONDS] [KIND's own options]

Each kind (``kinds.py``) is a sub-command whose module is imported, and its
options added, only when it is chosen.  Datagram kinds have no ``--unix``
or ``--backlog``.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any, Callable

from .._subcommands import Filler, add_subcommands
from .kinds import KINDS, default_port, is_datagram, load_kind
from .launch import LaunchError, run_kind, setup_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "`fastmux serve KIND --help` lists KIND's options."
    add_subcommands(parser, "kind", "KIND", {name: (kind.help, _kind(name)) for name, kind in KINDS.items()})


def _kind(name: str) -> Filler:
    def fill(parser: argparse.ArgumentParser) -> None:
        try:
            mod = load_kind(name)
        except ImportError as exc:  # whatever the options, that is the answer
            parser.exit(2, f"{parser.prog}: not available: module {KINDS[name].module} "
                           f"cannot be imported ({exc})\n")
        _common_arguments(parser, mod)
        mod.add_arguments(parser.add_argument_group(name))
        parser.set_defaults(_run=run, kind_module=mod)

    return fill


def _number(convert: Callable[[str], Any], what: str, low: float,
            high: float = float("inf")) -> Callable[[str], Any]:
    """An argparse ``type`` accepting ``low <= convert(text) <= high``, with a plain message."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_port = _number(int, "a port number 0-65535", 0, 65535)
_count = _number(int, "a whole number >= 0", 0)
_seconds = _number(float, "a number of seconds >= 0", 0)


def _common_arguments(parser: argparse.ArgumentParser, mod: ModuleType) -> None:
    g = parser.add_argument_group("listening")
    g.add_argument("--host", default="127.0.0.1", help="address or name to listen on (default: %(default)s)")
    g.add_argument("--port", type=_port, action="append", metavar="P",
                   help=f"port, repeat for several; 0 picks a free one (default: {default_port(mod)})")
    if is_datagram(mod):
        parser.set_defaults(unix=[], backlog=None)
    else:
        g.add_argument("--unix", action="append", default=[], metavar="PATH",
                       help="also (or only) listen on a Unix socket")
        g.add_argument("--backlog", type=_count, default=1024, help="listen backlog (default: %(default)s)")
    g = parser.add_argument_group("reactor and processes")
    g.add_argument("--backend", choices=("epoll", "poll", "select"), help="poller (default: the best available)")
    g.add_argument("--edge", action="store_true", help="edge-triggered epoll")
    g.add_argument("--workers", type=_count, default=0, metavar="N",
                   help="pre-fork N worker processes sharing the port(s) via SO_REUSEPORT; the parent "
                        "restarts crashed workers (default: 0, one process, no supervisor)")
    g.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS",
                   help="on SIGINT/SIGTERM, time allowed for in-flight work (default: %(default)s)")
    g.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="least severe messages logged (default: %(default)s)")
    # Developer switch: run the same protocols on asyncio/uvloop, for comparisons.
    g.add_argument("--loop", default="fastmux", choices=("fastmux", "asyncio", "uvloop"), help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        return run_kind(args.kind, args.kind_module, args)
    except LaunchError as exc:
        print(f"fastmux serve {args.kind}: {exc}", file=sys.stderr)
        return exc.code
