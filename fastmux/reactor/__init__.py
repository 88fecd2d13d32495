"""fastmux's reactor: a callback event loop with asyncio-shaped transports.

::

    from fastmux import Reactor, Protocol

    class Echo(Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)

    with Reactor() as loop:
        server = loop.create_server(Echo, "127.0.0.1", 0)
        print("listening on", server.addresses)
        loop.run_forever()

Modules: ``loop`` (the iteration and stream transports: the hot path, with
the design essay), ``_fdwatch`` (the backend over ``fastmux.selectors``),
``handles``, ``protocols``, ``servers``, ``connect``, ``datagram``,
``signals``.
"""
from __future__ import annotations

from ._fdwatch import available_backends
from .datagram import DatagramTransport
from .handles import Handle, TimerHandle
from .loop import Reactor, StreamTransport
from .protocols import (
    BaseProtocol,
    ConnectionFailedCallback,
    DatagramCallbacks,
    DatagramProtocol,
    Protocol,
    StreamCallbacks,
)
from .servers import Server

__all__ = [
    # the loop
    "Reactor",
    "Handle",
    "TimerHandle",
    "available_backends",
    # protocols (base classes and typing.Protocol descriptions)
    "BaseProtocol",
    "Protocol",
    "DatagramProtocol",
    "StreamCallbacks",
    "DatagramCallbacks",
    "ConnectionFailedCallback",
    # transports and servers
    "StreamTransport",
    "DatagramTransport",
    "Server",
]
