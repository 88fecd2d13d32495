"""Serving one kind in one process: bind, make the loop and the factory, serve.

Used by ``fastmux serve`` (``cli.py``) and by each ``--workers`` worker
(``supervisor.py``).  ``opts`` is the parsed ``fastmux serve KIND`` options
(see ``cli.py``): ``host``, ``port`` (a list), ``unix``, ``backlog``,
``loop``, ``backend``, ``edge``, ``grace`` and the kind's own.

Once every socket listens, one line goes to stdout:
``listening on 127.0.0.1:9999 [::1]:9999 unix:/tmp/echo.sock`` -- with
``--port 0`` this is how a script learns the port.  Logs go to stderr.
SIGINT/SIGTERM shut down gracefully (``shutdown.py``).
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
from types import ModuleType
from typing import Callable, List

from .. import __version__, _impl, _pollers
from . import _net
from ._runtime import AsyncioRuntime, ReactorRuntime, Runtime
from .context import ServeContext
from .kinds import is_datagram
from .shutdown import GracefulShutdown

log = logging.getLogger("fastmux.servers")


def identity() -> str:
    """Which fastmux this process runs (logged at start: the tests check that
    their servers run the fastmux under test); http ``-`` unless loaded."""
    from .. import reactor  # the choice is made on import (not yet, with --loop asyncio)

    return "fastmux %s from %s (core %s, reactor %s, http %s)" % (
        __version__, os.path.dirname(os.path.abspath(_pollers.__file__)), _pollers.IMPLEMENTATION,
        reactor.IMPLEMENTATION, _impl.chosen("fastmux.http._protocol_c"))


def open_listeners(opts: argparse.Namespace, mod: ModuleType, *, reuse_port: bool = False,
                   listen: bool = True) -> List[socket.socket]:
    """Every socket ``opts`` asks for, bound, and listening for streams (TCP
    ones only bound with ``listen=False``: see supervisor.py)."""
    udp = is_datagram(mod)
    socks: List[socket.socket] = []
    try:
        for port in opts.port:
            socks += _net.bind_inet(opts.host, port, udp=udp, reuse_port=reuse_port,
                                    listen=opts.backlog if listen else None)
        for path in opts.unix:
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


def serve(name: str, mod: ModuleType, opts: argparse.Namespace, socks: List[socket.socket],
          on_ready: Callable[[List[str]], None], *, own_unix_files: bool = True) -> int:
    """Serve on ``socks`` until SIGINT/SIGTERM; 0 after a graceful shutdown.

    Unix socket files are removed at exit if ``own_unix_files`` (a
    ``--workers`` worker leaves that to its parent).  ValueError: the kind
    refused its options (e.g. a menu file that cannot be used)."""
    unix_files = [_net.UnixCleanup(s) for s in socks
                  if own_unix_files and s.family == getattr(socket, "AF_UNIX", None)]
    addresses = [_net.sock_address(s) for s in socks]
    runtime = make_runtime(opts)
    ctx = ServeContext(runtime)
    shutdown = GracefulShutdown(runtime, ctx.conns, opts.grace)
    try:
        factory = mod.make_protocol_factory(opts, runtime.loop, ctx)
        start = runtime.serve_datagram if is_datagram(mod) else runtime.serve
        for sock in socks:
            shutdown.listeners.append(start(factory, sock))
        shutdown.install()
        backend = getattr(runtime.loop, "backend", "")
        log.info("%s serving on %s (%s%s), pid %d, %s", name, " ".join(addresses), runtime.name,
                 f" {backend}" if backend else "", os.getpid(), identity())
        on_ready(addresses)
        runtime.run_forever()
        log.info("stopped%s", f" (forced by {shutdown.forced_by})" if shutdown.forced_by else "")
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
