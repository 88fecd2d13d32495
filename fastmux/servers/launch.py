"""Run one kind to the end: one process (``serving``) or a supervisor and
its workers (``supervisor``), after the checks that need neither.

What ``fastmux serve`` runs once its options are parsed, and what the Python
API (``fastmux.http.serve``) runs with options it builds itself.
"""
from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Callable, List

from ._runtime import reactor_available
from .kinds import default_port
from .serving import open_listeners, print_ready, serve
from .supervisor import supervise

__all__ = ["LaunchError", "run_kind", "setup_logging"]


class LaunchError(Exception):
    """The server could not start; ``code`` is the exit status the CLI gives
    (2: unusable options, 1: cannot listen)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``, unless the program configured logging already."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s fastmux[%(process)d] %(levelname)s %(message)s")


def run_kind(name: str, mod: ModuleType, opts: argparse.Namespace,
             on_ready: Callable[[List[str]], None] = print_ready) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a graceful shutdown.  Raises
    LaunchError before anything listens if the options cannot work."""
    if opts.port is None:
        opts.port = [] if opts.unix else [default_port(mod)]
    if opts.loop == "fastmux":
        why = reactor_available()
        if why is not None:
            raise LaunchError(f"fastmux.reactor is not available ({why})", 2)
    check = getattr(mod, "check_options", None)
    if check is not None:
        try:
            check(opts)  # e.g. a menu file or --dir, before any socket or worker exists
        except ValueError as exc:
            raise LaunchError(str(exc), 2) from None
    if opts.workers:
        return supervise(name, mod, opts, on_ready)
    try:
        socks = open_listeners(opts, mod)
    except OSError as exc:
        raise LaunchError(f"cannot listen: {exc}", 1) from None
    try:
        return serve(name, mod, opts, socks, on_ready)
    except ValueError as exc:  # e.g. a menu file that cannot be used
        raise LaunchError(str(exc), 2) from None
