"""asyncio's streams on the reactor's transports: the transport feeds an exact
``asyncio.StreamReaderProtocol``'s ``StreamReader`` itself (``stream._feed_reader``),
and must leave the reader, its waiter and the transport as asyncio's own
``data_received`` -> ``feed_data`` would; subclasses and readers it cannot feed
get the real methods.  Each test drives one end of a socket pair by hand."""
from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from typing import Any, Callable, Dict, List, Tuple

import pytest

from fastmux.reactor._fdwatch import EVENT_READ
from support.aio import assert_reactor_transport, run, start_echo


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (the caller's wait_for bounds it)."""
    while not predicate():
        await asyncio.sleep(0.001)


async def connect(reader: asyncio.StreamReader, protocol: Any = None) -> Tuple[Any, socket.socket]:
    """``reader``'s connection over a socket pair (``protocol`` defaults to asyncio's
    own for it): the reactor's transport, and the peer's blocking end."""
    ours, peer = socket.socketpair()
    if protocol is None:
        protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await asyncio.get_running_loop().create_connection(lambda: protocol, sock=ours)
    assert_reactor_transport(transport)
    return transport, peer


def close(transport: Any, peer: socket.socket) -> None:
    transport.close()
    peer.close()


def reported_error(loop: Any, exc_type: type) -> Dict[str, Any]:
    """The one error the loop's exception handler got: ``exc_type``, from data_received."""
    [error] = loop.errors
    loop.errors.clear()
    assert isinstance(error["exception"], exc_type) and "data_received" in error["message"], error
    return error


def test_echo_integrity(loop: Any) -> None:
    """Every size of chunk, through many connections at once, comes back byte for byte."""
    payloads = [os.urandom(n) for n in (1, 2, 100, 1024, 4095, 4096, 65537, 300_000)]

    async def client(port: int) -> List[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = []
        for payload in payloads:
            writer.write(payload)
            await writer.drain()
            got.append(await reader.readexactly(len(payload)))
        writer.close()
        await writer.wait_closed()
        return got

    async def main() -> List[List[bytes]]:
        server, port = await start_echo(loop)
        async with server:
            results = await asyncio.gather(*(client(port) for _ in range(8)))
        await server.wait_closed()
        return results

    assert run(loop, main()) == [payloads] * 8


def test_waiting_reader_woken(loop: Any) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        task = asyncio.ensure_future(reader.read(100))
        await until(lambda: reader._waiter is not None)
        waiter = reader._waiter
        peer.sendall(b"ping")
        assert await task == b"ping"
        assert waiter.done() and not waiter.cancelled()
        assert reader._waiter is None
        close(transport, peer)

    run(loop, main())


def test_cancelled_waiter_skipped(loop: Any) -> None:
    """A reader cancelled while waiting, fed before its task runs again: the
    cancelled waiter is left alone (setting its result would raise) and the
    bytes wait in the buffer for the next read."""
    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        task = asyncio.ensure_future(reader.read(100))
        await until(lambda: reader._waiter is not None)
        waiter = reader._waiter
        peer.sendall(b"late")
        task.cancel()  # cancels the waiter now; the task runs later
        assert waiter.cancelled()
        transport._on_io(EVENT_READ)  # the bytes arrive before the task runs
        assert reader._waiter is None and bytes(reader._buffer) == b"late"
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await reader.read(100) == b"late"
        assert not transport.is_closing()
        close(transport, peer)

    run(loop, main())
    assert loop.errors == []


def test_limit_pauses_and_resumes_reading(loop: Any) -> None:
    """Past twice the limit the transport stops reading; a read that brings the
    buffer back to the limit resumes it, and no byte is lost."""
    limit = 1024
    sent = os.urandom(20 * limit)

    async def main() -> None:
        reader = asyncio.StreamReader(limit=limit)
        transport, peer = await connect(reader)
        peer.sendall(sent)
        await until(lambda: reader._paused)
        assert not transport.is_reading()
        assert len(reader._buffer) > 2 * limit
        got = bytearray()
        while len(got) < len(sent):
            got += await reader.read(limit)
        assert bytes(got) == sent
        assert not reader._paused and transport.is_reading()
        close(transport, peer)

    run(loop, main())


def test_limit_with_a_transport_that_cannot_pause(loop: Any) -> None:
    """asyncio's rule: a transport whose pause_reading raises NotImplementedError
    is forgotten (everything is buffered); any other error fails the protocol."""
    class CannotPause:
        def pause_reading(self) -> None:
            raise NotImplementedError

    class Broken:
        def pause_reading(self) -> None:
            raise RuntimeError("pause failed")

    async def main() -> None:
        reader = asyncio.StreamReader(limit=4)
        transport, peer = await connect(reader)
        reader._transport = CannotPause()
        peer.sendall(b"0123456789")
        await until(lambda: reader._transport is None)
        assert not reader._paused and transport.is_reading()
        assert await reader.read(100) == b"0123456789"

        reader._transport = Broken()
        peer.sendall(b"0123456789")
        await until(transport.is_closing)
        close(transport, peer)

    run(loop, main())
    reported_error(loop, RuntimeError)


def test_eof(loop: Any) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        assert await reader.read() == b"last words"
        assert reader.at_eof()
        close(transport, peer)

    run(loop, main())


@pytest.mark.skipif(not __debug__, reason="asyncio asserts it; python -O does not")
def test_data_after_feed_eof_fails_the_protocol(loop: Any) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        reader.feed_eof()
        peer.sendall(b"too late")
        await until(transport.is_closing)
        assert reader._buffer == b""
        close(transport, peer)

    run(loop, main())
    reported_error(loop, AssertionError)


def test_reader_subclass_gets_its_feed_data(loop: Any) -> None:
    class Reader(asyncio.StreamReader):
        def feed_data(self, data: bytes) -> None:
            fed.append(data)
            super().feed_data(data.upper())

    fed: List[bytes] = []

    async def main() -> None:
        reader = Reader()
        transport, peer = await connect(reader)
        peer.sendall(b"shout")
        assert await reader.read(100) == b"SHOUT"
        close(transport, peer)

    run(loop, main())
    assert fed == [b"shout"]


def test_protocol_subclass_gets_its_data_received(loop: Any) -> None:
    class Protocol(asyncio.StreamReaderProtocol):
        def data_received(self, data: bytes) -> None:
            received.append(data)
            super().data_received(data[::-1])

    received: List[bytes] = []

    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader, Protocol(reader))
        peer.sendall(b"abc")
        assert await reader.read(100) == b"cba"
        close(transport, peer)

    run(loop, main())
    assert received == [b"abc"]


@pytest.mark.parametrize("cls_name, method", [
    ("StreamReader", "feed_data"), ("StreamReader", "_wakeup_waiter"),
    ("StreamReaderProtocol", "data_received"),
])
def test_methods_patched_on_asyncio_classes_are_called(loop: Any, monkeypatch: Any, cls_name: str,
                                                      method: str) -> None:
    """A mock or tracer that replaces one of the methods the transport stands in
    for, on asyncio's class itself, sees every call: the transport then leaves
    the work to asyncio's methods."""
    cls = getattr(asyncio, cls_name)
    original = getattr(cls, method)
    calls: List[Any] = []

    def traced(self: Any, *args: Any) -> Any:
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(cls, method, traced)

    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        task = asyncio.ensure_future(reader.read(100))
        await until(lambda: reader._waiter is not None)
        peer.sendall(b"seen")
        assert await task == b"seen"
        close(transport, peer)

    run(loop, main())
    assert calls


def test_reader_collected(loop: Any) -> None:
    """asyncio's protocol holds its reader weakly: once the reader is gone,
    bytes are dropped and the connection stays up."""
    async def main() -> None:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, peer = await connect(reader, protocol)
        del reader
        gc.collect()
        assert protocol._stream_reader is None
        peer.sendall(b"nobody listens")
        await until(lambda: not _readable(transport))
        assert not transport.is_closing()
        close(transport, peer)

    run(loop, main())
    assert loop.errors == []


def _readable(transport: Any) -> bool:
    """Whether bytes wait unread in ``transport``'s socket."""
    try:
        return bool(transport._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def test_asyncio_frames_not_run(loop: Any) -> None:
    """The transport feeds an exact StreamReader itself: none of asyncio's
    data_received/feed_data/_wakeup_waiter frames run (a fallback that did
    would be silently slower)."""
    calls: List[str] = []
    watched = {"data_received", "feed_data", "_wakeup_waiter"}

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_name in watched and "asyncio" in frame.f_code.co_filename:
            calls.append(frame.f_code.co_name)

    async def main() -> None:
        reader = asyncio.StreamReader()
        transport, peer = await connect(reader)
        task = asyncio.ensure_future(reader.read(100))
        await until(lambda: reader._waiter is not None)
        sys.setprofile(profile)
        try:
            peer.sendall(b"fast")
            assert await task == b"fast"
        finally:
            sys.setprofile(None)
        close(transport, peer)

    run(loop, main())
    assert calls == []
