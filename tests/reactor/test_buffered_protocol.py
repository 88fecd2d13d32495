"""BufferedProtocol on the Reactor's stream transports: reads go into the
buffer the protocol lends (``get_buffer``/``buffer_updated``), in every
implementation and trigger mode, and ``set_protocol`` switches between the
two kinds of protocol mid-connection."""
from __future__ import annotations

import asyncio
import os
from typing import Any, List, Optional

import pytest

from fastmux.reactor import BaseProtocol

TIMEOUT = 10.0


class Lender(BaseProtocol):
    """A BufferedProtocol that does not derive from asyncio's: ``get_buffer`` and no
    ``data_received`` make it one.  Lends ``size`` bytes at a time; may echo."""

    def __init__(self, size: int, echo: bool = False) -> None:
        self.buf = bytearray(size)
        self.echo = echo
        self.transport: Any = None
        self.data = bytearray()
        self.hints: List[int] = []
        self.updates = 0
        self.eof = False
        self.lost: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> Any:
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.updates += 1
        chunk = bytes(self.buf[:nbytes])
        self.data += chunk
        if self.echo:
            self.transport.write(chunk)

    def eof_received(self) -> Optional[bool]:
        self.eof = True
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = exc if exc is not None else "clean"


class AsyncioLender(asyncio.BufferedProtocol, Lender):
    """The same, as an ``asyncio.BufferedProtocol`` (which also has no data_received)."""

    __init__ = Lender.__init__
    connection_made = Lender.connection_made
    get_buffer = Lender.get_buffer
    buffer_updated = Lender.buffer_updated
    eof_received = Lender.eof_received
    connection_lost = Lender.connection_lost


@pytest.mark.parametrize("kind", [Lender, AsyncioLender], ids=["duck", "asyncio"])
@pytest.mark.parametrize("size, total", [(7, 2000), (4096, 300_000)], ids=["tiny-buffer", "large-payload"])
def test_buffered_echo_server_and_client(loop, kind, size, total):
    payload = os.urandom(total)
    served: List[Lender] = []

    def factory() -> Lender:
        served.append(kind(4096, echo=True))
        return served[-1]

    server = loop.create_server(factory, "127.0.0.1", 0)
    client = kind(size)
    transport, _ = loop.create_connection(lambda: client, "127.0.0.1", server.port)
    transport.write(payload)
    assert loop.run_until(lambda: len(client.data) == total, timeout=TIMEOUT)
    assert client.data == payload
    assert client.updates >= total // size  # every byte came through the lent buffer
    assert set(client.hints) == {-1}
    transport.write_eof()
    assert loop.run_until(lambda: served and served[0].eof, timeout=TIMEOUT)
    served[0].transport.close()
    assert loop.run_until(lambda: client.lost, timeout=TIMEOUT)
    assert client.lost == "clean" and client.eof
    server.close()


@pytest.mark.parametrize("bad", ["empty", "get_buffer raises", "buffer_updated raises"])
def test_buffered_protocol_failure_aborts_and_is_reported(loop, socketpair, bad):
    class Bad(Lender):
        def get_buffer(self, sizehint: int) -> Any:
            if bad == "get_buffer raises":
                raise ValueError(bad)
            return bytearray() if bad == "empty" else self.buf

        def buffer_updated(self, nbytes: int) -> None:
            raise ValueError(bad)

    a, b = socketpair()
    proto = Bad(16)
    loop.create_connection(lambda: proto, sock=a)
    b.send(b"data")
    assert loop.run_until(lambda: proto.lost, timeout=TIMEOUT)
    expected = RuntimeError if bad == "empty" else ValueError
    assert isinstance(proto.lost, expected)
    [context] = loop.errors
    loop.errors.clear()
    assert context["exception"] is proto.lost
    assert ("buffer_updated" if bad == "buffer_updated raises" else "get_buffer") in context["message"]


def test_set_protocol_switches_between_data_received_and_get_buffer(loop, socketpair, recorder):
    a, b = socketpair()
    plain = recorder()
    transport, _ = loop.create_connection(lambda: plain, sock=a)
    b.send(b"one")
    assert loop.run_until(lambda: plain.data == b"one", timeout=TIMEOUT)
    lender = Lender(2)
    transport.set_protocol(lender)
    b.send(b"two")
    assert loop.run_until(lambda: lender.data == b"two", timeout=TIMEOUT)
    assert lender.updates == 2  # through the 2-byte buffer
    transport.set_protocol(plain)
    b.send(b"three")
    assert loop.run_until(lambda: plain.data == b"onethree", timeout=TIMEOUT)
    assert lender.data == b"two"
    transport.abort()
    assert loop.run_until(lambda: plain.lost, timeout=TIMEOUT)


def test_pause_reading_holds_a_buffered_protocol(loop, socketpair):
    a, b = socketpair()
    lender = Lender(64)
    transport, _ = loop.create_connection(lambda: lender, sock=a)
    assert loop.run_until(lambda: lender.transport, timeout=TIMEOUT)
    transport.pause_reading()
    b.send(b"held")
    loop.run_until(loop.time() + 0.02)
    assert lender.data == b"" and lender.hints == []
    transport.resume_reading()
    assert loop.run_until(lambda: lender.data == b"held", timeout=TIMEOUT)
    transport.abort()
    assert loop.run_until(lambda: lender.lost, timeout=TIMEOUT)
