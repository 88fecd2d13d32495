"""Fixtures for the HTTP tests (helpers live in http_helpers.py)."""
from __future__ import annotations

import importlib
from typing import Any, Iterator, List

import pytest

from http_helpers import CliServer, Conn, make_server
from fastmux._impl import implementations
from fastmux.http import protocol
from fastmux.http.protocol import HttpServer

PARSER_MODULES = {"c": "fastmux.http._parser_c", "py": "httptools"}


@pytest.fixture(scope="module", params=implementations("fastmux.http._parser_c"), ids=lambda p: f"parser-{p}")
def parser_twin(request) -> Iterator[type]:
    """Every server a module builds uses each request parser twin in turn:
    the compiled one (with feed_hello) and httptools'.  Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("parser_twin")``."""
    cls = importlib.import_module(PARSER_MODULES[request.param]).HttpRequestParser
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "RequestParser", cls)
        yield cls


@pytest.fixture
def server() -> HttpServer:
    return make_server()

@pytest.fixture
def conn(server) -> Conn:
    return Conn(server)

@pytest.fixture
def cli_server() -> Iterator[Any]:
    servers: List[CliServer] = []

    def start(*args: str, **kw: Any) -> CliServer:
        s = CliServer(*args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()

