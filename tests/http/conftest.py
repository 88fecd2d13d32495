"""Fixtures for the HTTP tests (helpers live in http_helpers.py)."""
from __future__ import annotations

from typing import Any, Iterator, List

import pytest

from http_helpers import CliServer, Conn, make_server
from fastmux.http.protocol import HttpServer


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

