"""``fastmux serve http``: the options and the protocol factory.

``fastmux.servers`` owns listening, the reactor, workers and graceful
shutdown; this module adds the HTTP options and builds the factory::

    fastmux serve http --port 8080                      # GET / -> Hello, World
    fastmux serve http --port 8080 --dir ./public       # static files
    fastmux serve http --port 8080 --app myapp:app --dir ./public
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Optional

from . import HttpConfig, HttpServer
from .access_log import AccessLog
from .app import load_app
from .static import StaticFiles

__all__ = ["DEFAULT_PORT", "add_arguments", "make_protocol_factory", "make_server", "options"]

DEFAULT_PORT = 8080
TRANSPORT = "stream"

_DEFAULTS = HttpConfig()


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def add_arguments(parser: Any) -> None:
    """Add the HTTP options to ``parser`` (an ArgumentParser or argument group)."""
    parser.add_argument("--dir", metavar="DIR",
                        help="serve static files from DIR (index.html or a listing for directories)")
    parser.add_argument("--app", metavar="MODULE:CALLABLE",
                        help="answer requests with CALLABLE(request) first; it returns "
                             "(status, headers, body) or None to fall through (see fastmux.http.app)")
    parser.add_argument("--access-log", metavar="FILE",
                        help="append a Common Log Format line per response to FILE ('-': standard "
                             "output); buffered, flushed every second (default: no access log)")
    parser.add_argument("--no-listing", action="store_true", help="with --dir: 403 instead of directory listings")
    parser.add_argument("--index", default="index.html", metavar="NAME",
                        help="with --dir: file served for a directory (default: %(default)s; '' for none)")
    parser.add_argument("--inline-max", type=int, default=16384, metavar="BYTES",
                        help="with --dir: files up to this size are read and written with the head in "
                             "one write; larger ones use sendfile (default: %(default)s)")
    g = parser
    g.add_argument("--max-url", type=_positive_int, default=_DEFAULTS.max_url, metavar="BYTES",
                   help="longest request target, else 414 (default: %(default)s)")
    g.add_argument("--max-head", type=_positive_int, default=_DEFAULTS.max_head, metavar="BYTES",
                   help="largest request line plus headers, else 431 (default: %(default)s)")
    g.add_argument("--max-headers", type=_positive_int, default=_DEFAULTS.max_headers, metavar="N",
                   help="most header fields, else 431 (default: %(default)s)")
    g.add_argument("--max-body", type=int, default=_DEFAULTS.max_body, metavar="BYTES",
                   help="largest request body, else 413 (default: %(default)s)")
    g.add_argument("--max-pipeline", type=_positive_int, default=_DEFAULTS.max_pipeline, metavar="N",
                   help="with pipelining, stop reading while more than N requests wait for their "
                        "answers (default: %(default)s)")
    g.add_argument("--keepalive-timeout", type=_positive_float, default=_DEFAULTS.keepalive_timeout,
                   metavar="S", help="close idle keep-alive connections after S seconds (default: %(default)s)")
    g.add_argument("--header-timeout", type=_positive_float, default=_DEFAULTS.header_timeout, metavar="S",
                   help="408 if a request head takes longer than S seconds (default: %(default)s)")
    g.add_argument("--body-timeout", type=_positive_float, default=_DEFAULTS.body_timeout, metavar="S",
                   help="408 if a request body stalls for S seconds (default: %(default)s)")
    g.add_argument("--send-timeout", type=_positive_float, default=_DEFAULTS.send_timeout, metavar="S",
                   help="drop a client that reads nothing for S seconds (default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> HttpConfig:
    return HttpConfig(
        max_url=args.max_url,
        max_head=args.max_head,
        max_headers=args.max_headers,
        max_body=args.max_body,
        max_pipeline=args.max_pipeline,
        keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        send_timeout=args.send_timeout,
    )


def make_server(args: argparse.Namespace, reactor: Any) -> HttpServer:
    """The started :class:`HttpServer` for ``args`` (it is the protocol factory)."""
    static: Optional[StaticFiles] = None
    if args.dir:
        static = StaticFiles(args.dir, index=args.index, listing=not args.no_listing, inline_max=args.inline_max)
    app = args.app if callable(args.app) else load_app(args.app) if args.app else None
    access_log = AccessLog(args.access_log) if args.access_log else None
    return HttpServer(reactor, config_from_args(args), app=app, static=static, access_log=access_log).start()


def options(**given: Any) -> argparse.Namespace:
    """The options ``fastmux serve http`` would parse, defaults filled in,
    with ``given`` (by option name: ``dir=``, ``max_body=``...) set; ``app``
    may be the callable itself."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    opts = parser.parse_args([])
    unknown = set(given) - set(vars(opts))
    if unknown:
        raise TypeError(f"unknown HTTP option(s): {', '.join(sorted(unknown))}")
    for name, value in given.items():
        setattr(opts, name, value)
    return opts


def make_protocol_factory(args: argparse.Namespace, reactor: Any, ctx: Any) -> Callable[[], Any]:
    """The factory to pass to ``reactor.create_server``.

    The connections register in ``ctx.conns`` (``ctx`` is a
    ``fastmux.servers.context.ServeContext``), so a graceful shutdown lets
    each finish the response in progress; the Date/timeout tick stops in
    ``ctx.close()``.
    """
    try:
        server = make_server(args, reactor)
    except (OSError, ImportError, AttributeError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    server.registry = ctx.conns
    ctx.at_close(server.close)
    return server
