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

Modules: ``loop`` (the loop and its iteration, with the design essay),
``stream`` and ``datagram`` (the transports, on the base in ``_transport``),
``_fdwatch`` (the backend over ``fastmux.selectors``), ``_fdcallbacks``
(``add_reader``/``add_writer``), ``handles``, ``protocols``, ``servers``,
``connect``, ``signals``; ``aioloop`` (asyncio's face of the loop, on the
compiled part in ``_aiocore``).

Twins: ``loop``, ``stream``, ``datagram``, ``_transport``, ``_fdcallbacks``,
``_fdwatch``, ``handles`` and ``_aiocore`` are also compiled, unchanged, each into ``_<name>_c``
(``stream.py`` -> ``_stream_c``, ``_transport.py`` -> ``_transport_c``),
typed by its own ``src/fastmux/reactor/_<name>_c.pxd`` (setup.py
TWIN_MODULES; the C types come from the .pxd alone, the .py annotations are
for type checkers).  A twin only uses siblings of its own kind: where one of
these modules imports another, an ``if cython.compiled:`` branch names the
``_c`` module and its ``else`` the .py (Cython resolves the test when it
compiles; run as Python, ``cython.compiled`` is false), and its .pxd
cimports the compiled siblings' types, so calls between them (the loop into
a transport, a transport into the loop, a transport into its base class)
stay C calls.  ``Reactor``, ``StreamTransport`` and ``DatagramTransport``
below come from the compiled twins unless ``fastmux._impl`` wants the
pure-Python fallback (``FASTMUX_NO_EXTENSIONS=1``, off CPython or Linux)
or they were not built; ``IMPLEMENTATION`` says which: ``"c"`` or ``"py"``.
The other modules are plain Python that reach the loop only through a
reactor instance, so either twin drives them.  After editing a twin's .py
or .pxd, rebuild (``python setup.py build_ext --inplace``):
``tests/reactor/test_twin.py`` fails on a stale compiled twin.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._impl import chosen, load_twin
from ._fdwatch import available_backends

if TYPE_CHECKING:
    from .datagram import DatagramTransport
    from .handles import Handle, TimerHandle
    from .loop import Reactor
    from .stream import StreamTransport
else:
    _loop = load_twin("fastmux.reactor._loop_c", "fastmux.reactor.loop")
    Reactor = _loop.Reactor
    if _loop.__name__.endswith("_c"):  # the transports and handles that this loop twin makes
        from ._datagram_c import DatagramTransport
        from ._handles_c import Handle, TimerHandle
        from ._stream_c import StreamTransport
    else:
        from .datagram import DatagramTransport
        from .handles import Handle, TimerHandle
        from .stream import StreamTransport

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
