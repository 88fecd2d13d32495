"""``fastmux serve echo``: TCP (and Unix socket) echo.

This is the server ``fastmux bench echo`` measures, so its per-request path
is exactly ``data_received -> transport.write`` and nothing else: in
``connection_made`` the instance's ``data_received`` is bound straight to the
transport's ``write``, so a loop that looks the method up per call (as asyncio
and the reactor do) calls ``write`` with no frame of ours in between.

The rest happens once per connection: registration for graceful shutdown,
and flow control (a client that sends but does not read pauses our reading
instead of growing the write buffer without bound).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Optional

from .context import ServeContext

DEFAULT_PORT = 9999
TRANSPORT = "stream"


class EchoProtocol:
    # No __slots__: connection_made sets the instance attribute data_received.

    def __init__(self, conns: Any) -> None:
        self._conns = conns
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.data_received = transport.write  # the whole per-request path
        self._conns.add(self)

    def data_received(self, data: bytes) -> None:  # used only by loops that cache the class's method
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close our side too, after flushing what is buffered

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._conns.discard(self)
        self.__dict__.pop("data_received", None)  # drop the transport reference
        self.transport = None

    # graceful shutdown (see shutdown.py)
    def shutdown(self) -> None:
        self.transport.close()  # flushes pending echoes, then closes

    def abort(self) -> None:
        self.transport.abort()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def make_protocol_factory(args: argparse.Namespace, reactor: Any, ctx: ServeContext) -> Callable[[], Any]:
    conns = ctx.conns
    return lambda: EchoProtocol(conns)
