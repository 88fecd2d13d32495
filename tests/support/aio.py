"""What the asyncio-face tests share: a bounded run, the echo server they talk to."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Tuple, TypeVar

import fastmux.reactor

from .net import TIMEOUT

_T = TypeVar("_T")


def run(loop: Any, coro: Awaitable[_T]) -> _T:
    """``coro`` to completion on ``loop``, failing after TIMEOUT."""
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def assert_reactor_transport(transport: Any) -> None:
    assert isinstance(transport, fastmux.reactor.StreamTransport), type(transport)


async def start_echo(loop: Any) -> Tuple[asyncio.AbstractServer, int]:
    """An ``asyncio.start_server`` echo (read, write, drain) on the running loop, and its port;
    each connection checks it got the reactor's transport."""
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert_reactor_transport(writer.transport)
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]
