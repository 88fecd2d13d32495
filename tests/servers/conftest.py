"""Fixtures for the server tests; the helpers live in ``server_helpers``."""
from __future__ import annotations

from typing import List

import pytest

from server_helpers import Server


@pytest.fixture
def server_factory():
    servers: List[Server] = []

    def make(kind: str, *args: str, **kw) -> Server:
        srv = Server(kind, *args, **kw)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()
