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

``loop.py`` is also compiled, unchanged, into ``_loop_c`` (typed by
``src/fastmux/reactor/_loop_c.pxd``); ``Reactor`` and ``StreamTransport``
come from that twin unless ``fastmux._impl`` wants the pure-Python fallback
(``FASTMUX_NO_EXTENSIONS=1``, off CPython or Linux) or it was not built.
``IMPLEMENTATION`` says which: ``"c"`` or ``"py"``.  The other modules reach
the loop only through a reactor instance, so either twin drives them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._impl import chosen, load_twin
from ._fdwatch import available_backends
from .datagram import DatagramTransport
from .handles import Handle, TimerHandle

if TYPE_CHECKING:
    from .loop import Reactor, StreamTransport
else:
    _loop = load_twin("fastmux.reactor._loop_c", "fastmux.reactor.loop")
    Reactor = _loop.Reactor
    StreamTransport = _loop.StreamTransport

IMPLEMENTATION: str = chosen("fastmux.reactor._loop_c")
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
    # which twin of the loop runs: "c" or "py"
    "IMPLEMENTATION",
]
