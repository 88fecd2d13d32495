"""Connections through asyncio's public API on fastmux's loop: streams,
BufferedProtocol, protocol switching, extra info, flow control, half-close,
``loop.sendfile``, TLS and asyncio.Server's connection bookkeeping.  Every
test checks that its connections ride the reactor's transports, so none can
pass on asyncio's own."""
from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

from support.aio import assert_reactor_transport, run, start_echo
from support.net import TIMEOUT, rst_close

MIB = 1024 * 1024


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def test_streams_echo(loop: Any) -> None:
    async def main() -> List[bytes]:
        server, port = await start_echo(loop)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert_reactor_transport(writer.transport)
            replies = []
            for payload in (b"hello\n", b"x" * 300_000):  # one of them beyond a socket buffer
                writer.write(payload)
                await writer.drain()
                replies.append(await reader.readexactly(len(payload)))
            writer.write_eof()
            replies.append(await reader.read())
            await close_writer(writer)
        await server.wait_closed()
        return replies

    assert run(loop, main()) == [b"hello\n", b"x" * 300_000, b""]


def test_extra_info(loop: Any) -> None:
    async def main() -> None:
        server, port = await start_echo(loop)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sock = writer.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert writer.get_extra_info("sockname") == sock.getsockname()
            assert writer.get_extra_info("peername") == ("127.0.0.1", port) == sock.getpeername()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # asyncio sets it
            assert writer.get_extra_info("no such thing", "default") == "default"
            assert writer.get_extra_info("socket") is sock  # made once, when first asked for
            await close_writer(writer)

    run(loop, main())


def test_accepted_transport_keeps_the_peer_address_from_accept(loop: Any) -> None:
    """As asyncio's: the server side's peername is what accept() returned, so it
    is still known after the peer has gone (getpeername() would then fail)."""
    async def main() -> None:
        accepted: "asyncio.Future[asyncio.StreamWriter]" = loop.create_future()

        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)
            with pytest.raises(ConnectionResetError):
                await reader.read()

        server = await asyncio.start_server(keep, "127.0.0.1", 0)
        async with server:
            client = socket.create_connection(server.sockets[0].getsockname()[:2])
            writer = await asyncio.wait_for(accepted, TIMEOUT)
            assert_reactor_transport(writer.transport)
            client_addr = client.getsockname()
            rst_close(client)  # the peer is gone before anyone asked
            await asyncio.sleep(0.05)
            with pytest.raises(OSError):
                writer.get_extra_info("socket").getpeername()
            assert writer.get_extra_info("peername") == client_addr
            writer.close()

    run(loop, main())


class Buffered(asyncio.BufferedProtocol):
    """Reads into a small buffer of its own, so that a payload takes many reads."""

    def __init__(self, size: int = 7, echo: bool = False) -> None:
        self.buf = bytearray(size)
        self.echo = echo
        self.data = bytearray()
        self.hints: List[int] = []
        self.transport: Any = None
        self.eof = asyncio.get_event_loop().create_future()
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> Any:
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        chunk = bytes(self.buf[:nbytes])
        self.data += chunk
        if self.echo:
            self.transport.write(chunk)

    def eof_received(self) -> None:
        self.eof.set_result(bytes(self.data))

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost.set_result(exc)


def test_buffered_protocol_server_and_client(loop: Any) -> None:
    payload = os.urandom(50_000)

    async def main() -> None:
        servers: List[Buffered] = []

        def factory() -> Buffered:
            servers.append(Buffered(size=4096, echo=True))
            return servers[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        async with server:
            transport, client = await loop.create_connection(lambda: Buffered(size=7),
                                                             "127.0.0.1", server.sockets[0].getsockname()[1])
            assert_reactor_transport(transport)
            transport.write(payload)
            transport.write_eof()
            (served,) = servers
            assert await served.eof == payload
            served.transport.close()
            assert await client.eof == payload
            assert await client.lost is None and await served.lost is None
            assert len(client.hints) > len(payload) // 7  # every read went through get_buffer
            assert set(client.hints) == {-1} and set(served.hints) == {-1}  # asyncio's size hint

    run(loop, main())


def test_get_buffer_returning_an_empty_buffer_aborts_and_is_reported(loop: Any) -> None:
    async def main() -> Tuple[Any, bytes]:
        proto = Buffered(size=0)
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            writer.write(b"data")
            exc = await proto.lost
            try:
                rest = await reader.read()
            except ConnectionResetError:  # closed with "data" unread: a reset
                rest = b""
            writer.close()
        return exc, rest

    exc, rest = run(loop, main())
    assert isinstance(exc, RuntimeError) and "empty buffer" in str(exc)
    assert rest == b""  # the server's side was closed
    [context] = loop.errors
    loop.errors.clear()
    assert context["exception"] is exc


class Switching(asyncio.Protocol):
    """A line protocol that hands the connection to a BufferedProtocol on ``UPGRADE``,
    with the bytes that came after it, as uvicorn does on a websocket upgrade."""

    def __init__(self) -> None:
        self.lines = bytearray()
        self.upgraded: asyncio.Future = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.lines += data
        head, sep, rest = bytes(self.lines).partition(b"UPGRADE\n")
        if sep:
            new = SwitchBack(self)
            self.transport.set_protocol(new)
            new.connection_made(self.transport)
            if rest:
                new.feed(rest)
            self.upgraded.set_result(new)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        pass


class SwitchBack(Buffered):
    """Upper-cases what it reads back to the peer; ``BACK`` returns to the line protocol."""

    def __init__(self, previous: Switching) -> None:
        super().__init__(size=3)
        self.previous = previous

    def feed(self, data: bytes) -> None:
        self.data += data
        if self.data.endswith(b"BACK\n"):
            self.transport.write(b"[" + bytes(self.data).upper() + b"]")
            self.previous.lines = bytearray()
            self.transport.set_protocol(self.previous)

    def buffer_updated(self, nbytes: int) -> None:
        self.feed(bytes(self.buf[:nbytes]))


def test_set_protocol_switches_between_protocol_and_buffered_protocol(loop: Any) -> None:
    async def main() -> None:
        proto = Switching()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            writer.write(b"line one\nUPGRADE\nab")
            new = await proto.upgraded
            assert proto.transport.get_protocol() is new
            writer.write(b"cdef BACK\n")
            assert await reader.readexactly(12) == b"[ABCDEF BACK"
            assert await reader.readexactly(2) == b"\n]"
            assert proto.transport.get_protocol() is proto
            writer.write(b"plain again\n")
            while b"plain again" not in proto.lines:
                await asyncio.sleep(0.001)
            assert bytes(proto.lines) == b"plain again\n"
            await close_writer(writer)

    run(loop, main())


class Sink(asyncio.Protocol):
    """Records flow-control calls; its ``transport`` is the server side of the connection."""

    def __init__(self) -> None:
        self.events: List[str] = []
        self.data = bytearray()
        self.transport: Any = None
        self.made = asyncio.get_event_loop().create_future()
        self.resumed: Optional[asyncio.Future] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)


async def sink_server(loop: Any) -> Tuple[Any, Sink, asyncio.StreamReader, asyncio.StreamWriter]:
    proto = Sink()
    server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await proto.made
    return server, proto, reader, writer


def test_write_buffer_limits_and_flow_control_with_a_slow_reader(loop: Any) -> None:
    async def main() -> None:
        server, proto, reader, writer = await sink_server(loop)
        async with server:
            t = proto.transport
            t.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
            assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            payload = os.urandom(8 * MIB)  # more than the socket buffers take: the rest is queued
            proto.resumed = loop.create_future()
            t.write(payload)
            assert proto.events == ["pause"]
            assert t.get_write_buffer_size() > 64 * 1024
            await asyncio.sleep(0.01)  # nobody reads: still paused
            assert proto.events == ["pause"]
            got = await reader.readexactly(len(payload))  # the slow reader catches up
            await proto.resumed
            assert got == payload
            assert proto.events == ["pause", "resume"]
            assert t.get_write_buffer_size() == 0
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=1, low=2)
            await close_writer(writer)

    run(loop, main())


def test_pause_and_resume_reading(loop: Any) -> None:
    async def main() -> None:
        server, proto, reader, writer = await sink_server(loop)
        async with server:
            t = proto.transport
            assert t.is_reading()
            t.pause_reading()
            t.pause_reading()  # idempotent
            assert not t.is_reading()
            writer.write(b"while paused")
            await writer.drain()
            await asyncio.sleep(0.02)
            assert proto.data == b""
            t.resume_reading()
            assert t.is_reading()
            while proto.data != b"while paused":
                await asyncio.sleep(0.001)
            t.close()
            assert not t.is_reading()  # closing: asyncio says it is not reading
            await close_writer(writer)

    run(loop, main())


def test_write_eof_half_closes(loop: Any) -> None:
    async def main() -> bytes:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.read()  # until the client's EOF
            writer.write(b"got " + request)  # the other direction is still open
            assert writer.can_write_eof()
            writer.write_eof()
            with pytest.raises(RuntimeError):
                writer.write(b"after eof")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            assert writer.can_write_eof()
            writer.write(b"request")
            writer.write_eof()
            reply = await reader.read()
            await close_writer(writer)
        return reply

    assert run(loop, main()) == b"got request"


# -- loop.sendfile


@pytest.fixture
def data_file(tmp_path: Path) -> Tuple[Path, bytes]:
    data = os.urandom(4 * MIB)  # beyond what the small socket buffers below take at once
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


async def sendfile_pair(loop: Any) -> Tuple[Any, Any, asyncio.StreamReader, asyncio.StreamWriter]:
    """A server-side transport (small send buffer) and a client stream (small receive buffer)."""
    server, proto, reader, writer = await sink_server(loop)
    proto.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    return server, proto.transport, reader, writer


@pytest.mark.parametrize("offset, count", [(0, None), (1000, 5000), (3 * MIB, None), (4 * MIB - 10, 100)])
def test_sendfile_regular_file(loop: Any, data_file: Tuple[Path, bytes], offset: int,
                               count: Optional[int]) -> None:
    path, data = data_file
    expected = data[offset:] if count is None else data[offset:offset + count]

    async def main() -> None:
        server, t, reader, writer = await sendfile_pair(loop)
        async with server:
            with path.open("rb") as f:
                t.write(b"head:")  # what was written before goes first
                received = asyncio.ensure_future(reader.readexactly(5 + len(expected)))
                sent = await loop.sendfile(t, f, offset, count)
                assert sent == len(expected)
                assert f.tell() == offset + sent
            t.write(b":tail")  # writable again
            assert await received == b"head:" + expected
            assert await reader.readexactly(5) == b":tail"
            await close_writer(writer)

    run(loop, main())


@pytest.mark.parametrize("offset, count", [(0, None), (1000, 70_000)])
def test_sendfile_of_a_file_without_fd_copies(loop: Any, data_file: Tuple[Path, bytes], offset: int,
                                              count: Optional[int]) -> None:
    data = data_file[1][:300_000]
    expected = data[offset:] if count is None else data[offset:offset + count]

    async def main() -> None:
        server, t, reader, writer = await sendfile_pair(loop)
        async with server:
            f = io.BytesIO(data)
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sendfile(t, f, offset, count, fallback=False)
            received = asyncio.ensure_future(reader.readexactly(len(expected)))
            assert await loop.sendfile(t, f, offset, count) == len(expected)
            assert f.tell() == offset + len(expected)
            assert await received == expected
            await close_writer(writer)

    run(loop, main())


def test_write_during_sendfile_is_refused(loop: Any, data_file: Tuple[Path, bytes]) -> None:
    path, data = data_file

    async def main() -> None:
        server, t, reader, writer = await sendfile_pair(loop)
        async with server:
            with path.open("rb") as f:
                sending = asyncio.ensure_future(loop.sendfile(t, f))
                await asyncio.sleep(0.01)  # the client does not read: the file is still going out
                assert not sending.done()
                with pytest.raises(RuntimeError, match="sendfile is in progress"):
                    t.write(b"interleaved")
                with pytest.raises(RuntimeError, match="sendfile is in progress"):
                    t.writelines([b"interleaved"])
                assert await reader.readexactly(len(data)) == data
                assert await sending == len(data)
            t.write(b"after")
            assert await reader.readexactly(5) == b"after"
            await close_writer(writer)

    run(loop, main())


def test_peer_closing_during_sendfile(loop: Any, data_file: Tuple[Path, bytes]) -> None:
    path, data = data_file

    async def main(f: Any) -> int:
        proto = Sink()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        async with server:
            client = socket.socket()
            try:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                client.setblocking(False)
                await loop.sock_connect(client, server.sockets[0].getsockname())
                t = await proto.made
                t.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
                sending = asyncio.ensure_future(loop.sendfile(t, f, 10))
                got = await loop.sock_recv(client, 1000)
                assert got == data[10:10 + len(got)]
                await asyncio.sleep(0.01)
                assert not sending.done()
            finally:
                rst_close(client)
            with pytest.raises(ConnectionError):
                await sending
            return len(got)

    with path.open("rb") as f:
        received = run(loop, main(f))
        assert 10 + received <= f.tell() < len(data)  # what went, at least what the peer read


# -- TLS, with the certificates CPython's own test suite ships


def _cpython_test_file(name: str) -> Optional[Path]:
    """``Lib/test/certdata/NAME`` (3.12+, 3.11's later releases) or ``Lib/test/NAME``, if the
    interpreter ships its test package."""
    spec = importlib.util.find_spec("test")
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        for candidate in (Path(base, "certdata", name), Path(base, name)):
            if candidate.is_file():
                return candidate
    return None


@pytest.fixture(scope="module")
def tls_contexts() -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: the server's certificate for ``localhost`` is signed
    by the CA the client trusts (``keycert3.pem`` and ``pycacert.pem``)."""
    cert, ca = _cpython_test_file("keycert3.pem"), _cpython_test_file("pycacert.pem")
    if cert is None or ca is None:
        pytest.skip("this Python ships no test certificates (Lib/test/certdata)")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert)
    client_ctx = ssl.create_default_context(cafile=str(ca))
    return server_ctx, client_ctx


BIG_TLS = b"tls " * 100_000  # many TLS records


def test_tls_server_and_client(loop: Any, tls_contexts: Tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts

    async def main() -> List[bytes]:
        raw: List[Any] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw.append(writer.transport.get_extra_info("socket"))
            assert writer.get_extra_info("ssl_object") is not None
            data = await reader.readexactly(len(BIG_TLS))  # asyncio's TLS has no write_eof
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1],
                                                           ssl=client_ctx, server_hostname="localhost")
            # asyncio's TLS protocol over a reactor transport
            ssl_proto = writer.transport._ssl_protocol
            assert_reactor_transport(ssl_proto._transport)
            assert writer.get_extra_info("peercert")["subject"]
            writer.write(BIG_TLS)
            reply = await reader.read()
            await close_writer(writer)
        return [reply == BIG_TLS.upper(), len(raw)]

    assert run(loop, main()) == [True, 1]


def test_tls_refuses_an_untrusted_certificate(loop: Any,
                                              tls_contexts: Tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _ = tls_contexts

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1],
                                              ssl=ssl.create_default_context(), server_hostname="localhost")

    run(loop, main())
    loop.errors.clear()  # the server side's failed handshake, reported as asyncio reports it


class StartTls(asyncio.Protocol):
    """Plain text until ``STARTTLS``; then upper-cases what comes over TLS."""

    def __init__(self, server_ctx: ssl.SSLContext) -> None:
        self.server_ctx = server_ctx
        self.tls: asyncio.Future = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if data == b"STARTTLS\n":
            self.transport.write(b"OK\n")
            asyncio.ensure_future(self.upgrade())
        else:
            self.transport.write(data.upper())

    async def upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        assert_reactor_transport(self.transport)
        self.transport = await loop.start_tls(self.transport, self, self.server_ctx, server_side=True)
        self.tls.set_result(self.transport)


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.lost = asyncio.get_event_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost.set_result(exc)


def test_start_tls_upgrades_a_plain_connection(loop: Any,
                                               tls_contexts: Tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts

    async def until(cond: Any) -> None:
        while not cond():
            await asyncio.sleep(0.001)

    async def main() -> None:
        served = StartTls(server_ctx)
        server = await loop.create_server(lambda: served, "127.0.0.1", 0)
        async with server:
            transport, client = await loop.create_connection(Collect, "127.0.0.1",
                                                             server.sockets[0].getsockname()[1])
            assert_reactor_transport(transport)
            transport.write(b"STARTTLS\n")
            await until(lambda: client.data == b"OK\n")
            tls = await loop.start_tls(transport, client, client_ctx, server_hostname="localhost")
            assert tls.get_extra_info("peercert")["subject"]
            assert (await served.tls).get_extra_info("ssl_object") is not None
            tls.write(b"secret")
            await until(lambda: client.data == b"OK\nSECRET")
            tls.close()
            assert await client.lost is None
            served.transport.close()  # asyncio's TLS transport up to 3.10 warns unless closed itself

    run(loop, main())


# -- asyncio.Server: its connections


async def serve_sinks(loop: Any, n: int) -> Tuple[Any, List[Sink], List[Any]]:
    """A server of Sinks and ``n`` stream clients connected to it (each one's Sink made)."""
    protos: List[Sink] = []

    def factory() -> Sink:
        protos.append(Sink())
        return protos[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
    await asyncio.gather(*(p.made for p in protos))
    return server, protos, clients


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Server.wait_closed waits for connections from 3.12")
def test_server_wait_closed_waits_for_its_connections(loop: Any) -> None:
    async def main() -> None:
        server, protos, clients = await serve_sinks(loop, 2)
        server.close()
        assert not server.is_serving()
        waiting = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # two connections still open
        protos[0].transport.close()
        await asyncio.sleep(0.01)
        assert not waiting.done()  # one
        protos[1].transport.close()
        await waiting
        for _, writer in clients:
            await close_writer(writer)

    run(loop, main())


@pytest.mark.skipif(not hasattr(asyncio.Server, "close_clients"), reason="Server.close_clients is 3.13+")
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_server_close_and_abort_clients(loop: Any, how: str) -> None:
    async def main() -> None:
        server, protos, clients = await serve_sinks(loop, 3)
        server.close()
        getattr(server, how)()
        await server.wait_closed()  # every connection went
        assert all(p.transport.is_closing() for p in protos)
        for reader, writer in clients:
            try:
                assert await reader.read() == b""
            except ConnectionResetError:  # abort_clients
                pass
            await close_writer(writer)

    run(loop, main())
