"""Fixtures for the HTTP tests (helpers live in http_helpers.py)."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Iterator, List, Tuple

import pytest

import http_helpers
from http_helpers import Conn, make_server
from fastmux._impl import implementations
from fastmux.http.protocol import HttpServer
from support.server import Server

PROTOCOL_MODULES = {"c": "fastmux.http._protocol_c", "py": "fastmux.http.protocol"}
PARSER_MODULES = {"c": "fastmux.http._parser_c", "py": "httptools"}
TWINS = [(proto, parser) for proto in implementations("fastmux.http._protocol_c")
         for parser in implementations("fastmux.http._parser_c")]


@pytest.fixture(scope="module", params=TWINS, ids=lambda t: f"proto-{t[0]}-parser-{t[1]}")
def http_twins(request) -> Iterator[Tuple[ModuleType, type]]:
    """Every server a module builds with ``make_server`` runs on each pair of
    twins in turn: the protocol (protocol.py compiled, or as Python) and the
    request parser (the compiled one with feed_hello, or httptools').
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("http_twins")``."""
    proto_impl, parser_impl = request.param
    proto = importlib.import_module(PROTOCOL_MODULES[proto_impl])
    parser = importlib.import_module(PARSER_MODULES[parser_impl]).HttpRequestParser
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(proto, "RequestParser", parser)
        mp.setattr(http_helpers, "protocol", proto)
        yield proto, parser


@pytest.fixture
def server() -> HttpServer:
    return make_server()

@pytest.fixture
def conn(server) -> Conn:
    return Conn(server)

@pytest.fixture
def cli_server() -> Iterator[Any]:
    """``cli_server(*args, **kw)``: ``fastmux serve http --port 0 ARGS``, killed at teardown."""
    servers: List[Server] = []

    def start(*args: str, **kw: Any) -> Server:
        s = Server("http", *args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
