"""The kinds of server ``fastmux serve`` runs, and what a kind module provides.

A kind is a module, imported only when chosen, so ``serve http``
(``fastmux.http.cli_serve``, another package) costs nothing unless used,
and its absence is reported plainly.  It provides:

* ``add_arguments(parser)``: its own options;
* ``make_protocol_factory(args, reactor, ctx)``: the protocol factory, given
  the parsed options, the loop and the process's ``ServeContext``; its
  protocols join ``ctx.conns`` for graceful shutdown, and what it starts
  is stopped by ``ctx.at_close``;

and optionally ``DEFAULT_PORT``, ``TRANSPORT`` (``"stream"``, the default, or
``"datagram"``) and ``check_options(args)``, which raises ValueError for bad
options before any socket is bound or worker forked.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


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


def load_kind(name: str) -> ModuleType:
    """The module behind a kind; ImportError says what is missing."""
    return importlib.import_module(KINDS[name].module)


def default_port(mod: ModuleType) -> int:
    return getattr(mod, "DEFAULT_PORT", 8080)


def is_datagram(mod: ModuleType) -> bool:
    return getattr(mod, "TRANSPORT", "stream") == "datagram"
