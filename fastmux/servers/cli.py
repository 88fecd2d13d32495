"""``fastmux serve KIND``: run one of the servers on fastmux's reactor.

    fastmux serve KIND [--host H] [--port P ...] [--unix PATH ...]
                       [--backend epoll|poll|select] [--edge] [--workers N]
                       [--grace SECONDS] [KIND's own options]

Kinds are looked up in ``KINDS`` and their modules imported only when
chosen, so ``serve http`` (``fastmux.http.cli_serve``, another package)
costs nothing unless used, and its absence is reported plainly.  A kind
module provides ``add_arguments(parser)`` and
``make_protocol_factory(args, reactor[, ctx])`` (see ``make_factory``);
optionally ``DEFAULT_PORT``, ``TRANSPORT`` (``"stream"`` or ``"datagram"``)
and ``check_options(args)``, which raises ValueError for bad options before
any socket is bound or worker forked.

Once every socket listens, one line goes to stdout:
``listening on 127.0.0.1:9999 [::1]:9999 unix:/tmp/echo.sock`` -- with
``--port 0`` this is how a script learns the port.  Logs go to stderr.
SIGINT/SIGTERM shut down gracefully (``shutdown.py``) and exit 0.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import socket
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, List, Sequence

import fastmux

from .. import _pollers
from . import _net
from ._runtime import AsyncioRuntime, ReactorRuntime, Runtime, reactor_available
from .context import ServeContext
from .shutdown import GracefulShutdown, tracked_factory

log = logging.getLogger("fastmux.servers")


@dataclass(frozen=True)
class Kind:
    module: str
    help: str


KINDS = {
    "echo": Kind("fastmux.servers.echo", "TCP/Unix echo (what `fastmux bench echo` measures)"),
    "udp-echo": Kind("fastmux.servers.udp_echo", "UDP echo; try `fastmux client udp HOST:PORT`"),
    "menu": Kind("fastmux.servers.menu", "the tutorial's 10086 phone-menu bot; --menu FILE extends it"),
    "upload": Kind("fastmux.servers.upload", "file upload into --dir; `fastmux send FILE HOST:PORT`"),
    "http": Kind("fastmux.http.cli_serve", "HTTP server from fastmux.http"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Run a server on fastmux's reactor.  KIND is one of: " + ", ".join(
        f"{name} ({kind.help})" for name, kind in KINDS.items()
    ) + ".  `fastmux serve KIND --help` lists KIND's options."
    parser.add_argument("kind", choices=list(KINDS), metavar="KIND", help=" | ".join(KINDS))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of KIND (see --help after KIND)")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _common_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    g = parser.add_argument_group("listening")
    g.add_argument("--host", default="127.0.0.1", help="address or name to listen on (default: %(default)s)")
    g.add_argument("--port", type=_port, action="append", metavar="P",
                   help=f"TCP/UDP port, repeat for several; 0 picks a free one (default: {default_port})")
    g.add_argument("--unix", action="append", metavar="PATH", help="also (or only) listen on a Unix socket")
    g.add_argument("--backlog", type=int, default=1024, help="listen backlog (default: %(default)s)")
    g = parser.add_argument_group("reactor and processes")
    g.add_argument("--backend", choices=("epoll", "poll", "select"), help="poller (default: the best available)")
    g.add_argument("--edge", action="store_true", help="edge-triggered epoll")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="pre-fork N worker processes sharing the port(s) via SO_REUSEPORT; the parent "
                        "restarts crashed workers (default: 0, one process, no supervisor)")
    g.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="on SIGINT/SIGTERM, time allowed for in-flight work (default: %(default)s)")
    g.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    # Developer switch: run the same protocols on asyncio/uvloop, for comparisons.
    g.add_argument("--loop", default="fastmux", choices=("fastmux", "asyncio", "uvloop"), help=argparse.SUPPRESS)


def load_kind(name: str) -> ModuleType:
    """The module behind a kind; ImportError says what is missing."""
    return importlib.import_module(KINDS[name].module)


def kind_parser(name: str, mod: ModuleType) -> argparse.ArgumentParser:
    kind = KINDS[name]
    parser = argparse.ArgumentParser(prog=f"fastmux serve {name}", description=kind.help)
    _common_arguments(parser, getattr(mod, "DEFAULT_PORT", 8080))
    g = parser.add_argument_group(f"{name}")
    mod.add_arguments(g)
    return parser


def parse_kind_options(name: str, mod: ModuleType, argv: Sequence[str]) -> argparse.Namespace:
    opts = kind_parser(name, mod).parse_args(list(argv))
    opts.kind = name
    if opts.port is None and not opts.unix:
        opts.port = [getattr(mod, "DEFAULT_PORT", 8080)]
    opts.port = opts.port or []
    return opts


def is_datagram(mod: ModuleType) -> bool:
    return getattr(mod, "TRANSPORT", "stream") == "datagram"


def open_listeners(opts: argparse.Namespace, mod: ModuleType, *, reuse_port: bool = False,
                   listen: bool = True) -> List[socket.socket]:
    """Every socket ``opts`` asks for, bound, and listening for streams (TCP
    ones only bound with ``listen=False``: see supervisor.py)."""
    udp = is_datagram(mod)
    if udp and opts.unix:
        raise OSError(f"{opts.kind} serves UDP; --unix is not supported")
    socks: List[socket.socket] = []
    try:
        for port in opts.port:
            socks += _net.bind_inet(opts.host, port, udp=udp, reuse_port=reuse_port,
                                    listen=opts.backlog if listen else None)
        for path in opts.unix or ():
            socks.append(_net.bind_unix(path, opts.backlog))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def make_runtime(opts: argparse.Namespace) -> Runtime:
    if opts.loop == "fastmux":
        return ReactorRuntime(backend=opts.backend, edge=opts.edge)
    if opts.loop == "uvloop":
        import uvloop

        return AsyncioRuntime(uvloop.new_event_loop())
    return AsyncioRuntime()


def make_factory(mod: ModuleType, opts: argparse.Namespace, ctx: ServeContext) -> Callable[[], Any]:
    """``make_protocol_factory(args, reactor, ctx)`` if the kind takes the
    context (its protocols then join ``ctx.conns`` themselves), else
    ``make_protocol_factory(args, reactor)`` with its connections tracked
    from outside."""
    make = mod.make_protocol_factory
    try:
        takes_ctx = len(inspect.signature(make).parameters) >= 3
    except (TypeError, ValueError):
        takes_ctx = False
    if takes_ctx:
        return make(opts, ctx.runtime.loop, ctx)
    return tracked_factory(make(opts, ctx.runtime.loop), ctx.conns)


def serve(name: str, mod: ModuleType, opts: argparse.Namespace, socks: List[socket.socket],
          on_ready: Callable[[List[str]], None], *, own_unix_files: bool = True) -> int:
    """Serve on ``socks`` until SIGINT/SIGTERM; 0 after a graceful shutdown.

    Unix socket files are removed at exit if ``own_unix_files`` (a
    ``--workers`` worker leaves that to its parent)."""
    unix_files = [_net.UnixCleanup(s) for s in socks
                  if own_unix_files and s.family == getattr(socket, "AF_UNIX", None)]
    addresses = [_net.sock_address(s) for s in socks]
    runtime = make_runtime(opts)
    ctx = ServeContext(runtime)
    shutdown = GracefulShutdown(runtime, ctx.conns, opts.grace)
    try:
        factory = make_factory(mod, opts, ctx)
        for sock in socks:
            if is_datagram(mod):
                shutdown.listeners.append(runtime.serve_datagram(factory, sock))
            else:
                shutdown.listeners.append(runtime.serve(factory, sock))
        shutdown.install()
        backend = getattr(runtime.loop, "backend", "")
        http = sys.modules.get("fastmux.http")  # loaded by `serve http` only
        log.info("%s serving on %s (%s%s), pid %d, fastmux %s from %s (core %s, reactor %s, http %s)", name,
                 " ".join(addresses), runtime.name, f" {backend}" if backend else "", os.getpid(),
                 fastmux.__version__, os.path.dirname(fastmux.__file__), _pollers.IMPLEMENTATION,
                 fastmux.reactor.IMPLEMENTATION, http.IMPLEMENTATION if http is not None else "-")
        on_ready(addresses)
        runtime.run_forever()
        log.info("stopped%s", " (grace period exceeded)" if shutdown.forced else "")
    finally:
        for unix_file in unix_files:
            unix_file.remove()
        for listener in shutdown.listeners:
            listener.close()
        ctx.close()
        runtime.close()
        for sock in socks:
            sock.close()
    return 0


def print_ready(addresses: List[str]) -> None:
    print("listening on " + " ".join(addresses), flush=True)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s fastmux[%(process)d] %(levelname)s %(message)s")


def run(args: argparse.Namespace) -> int:
    name = args.kind
    try:
        mod = load_kind(name)
    except ImportError as exc:
        print(f"fastmux serve {name}: not available: module {KINDS[name].module} cannot be imported ({exc})",
              file=sys.stderr)
        return 2
    opts = parse_kind_options(name, mod, args.options)
    setup_logging(opts.log_level)
    if opts.loop == "fastmux":
        why = reactor_available()
        if why is not None:
            print(f"fastmux serve {name}: fastmux.reactor is not available ({why})", file=sys.stderr)
            return 2
    if opts.workers < 0:
        print("fastmux serve: --workers must be >= 0", file=sys.stderr)
        return 2
    check = getattr(mod, "check_options", None)
    if check is not None:
        try:
            check(opts)  # e.g. a menu file or --dir, before any socket or worker exists
        except ValueError as exc:
            print(f"fastmux serve {name}: {exc}", file=sys.stderr)
            return 2
    if opts.workers:
        from .supervisor import supervise

        return supervise(name, mod, opts)
    try:
        socks = open_listeners(opts, mod)
    except OSError as exc:
        print(f"fastmux serve {name}: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        return serve(name, mod, opts, socks, print_ready)
    except ValueError as exc:  # e.g. a menu file that cannot be used
        print(f"fastmux serve {name}: {exc}", file=sys.stderr)
        return 2
