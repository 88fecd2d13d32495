"""Stream transports: every read/write path, flow control, half-close, errors, connecting."""
from __future__ import annotations

import concurrent.futures
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import textwrap

import pytest

from fastmux.benchmarks.load.harness import free_port
from fastmux.reactor import Protocol
from fastmux.reactor import stream as pure_stream

TIMEOUT = 10.0
BIG = 4 * 1024 * 1024


class Sink:
    """A raw peer socket read by the same loop (add_reader), into ``data``."""

    def __init__(self, loop, sock, start=True):
        self.loop = loop
        self.sock = sock
        self.data = bytearray()
        self.eof = False
        self.error = None
        sock.setblocking(False)
        if start:
            self.start()

    def start(self):
        self.loop.add_reader(self.sock, self._read)

    def _read(self):
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = exc
            self.loop.remove_reader(self.sock)
            return
        if chunk:
            self.data += chunk
        else:
            self.eof = True
            self.loop.remove_reader(self.sock)

    def stop(self):
        self.loop.remove_reader(self.sock)


def pattern(n, seed=0):
    """Distinct, checkable bytes."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (n // len(block) + 1))[:n]


def connected(loop, socketpair, protocol, sink=True):
    a, b = socketpair()
    transport, proto = loop.create_connection(lambda: protocol, sock=a)
    assert loop.run_until(lambda: protocol.made, timeout=TIMEOUT)
    return transport, (Sink(loop, b) if sink else b)


def test_echo_server_and_client(loop, loop_module, stream_module, recorder):
    server = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", 0)
    client = recorder()
    transport, proto = loop.create_connection(lambda: client, "127.0.0.1", server.port)
    assert proto is client
    assert isinstance(transport, stream_module.StreamTransport)  # the loop's own twin
    assert type(loop) is loop_module.Reactor
    transport.write(b"hello ")
    transport.write(b"world")
    assert loop.run_until(lambda: client.data == b"hello world", timeout=TIMEOUT)
    assert transport.get_extra_info("peername") == ("127.0.0.1", server.port)
    assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
    assert isinstance(transport.get_extra_info("socket"), socket.socket)
    assert transport.get_extra_info("nope", 42) == 42
    assert transport.get_protocol() is client
    transport.close()
    assert transport.is_closing()
    assert loop.run_until(lambda: client.lost, timeout=TIMEOUT)
    assert client.lost == "clean" and client.events[0] == "made" and client.lost_count == 1
    assert loop.run_until(lambda: server.connections == 0, timeout=TIMEOUT)
    server.close()


def test_write_goes_out_at_once(loop, socketpair, recorder):
    p = recorder()
    transport, sink = connected(loop, socketpair, p)
    transport.write(b"x" * 1000)
    assert transport.get_write_buffer_size() == 0  # sent by write() itself
    transport.write(bytearray(b"ab"))
    transport.write(memoryview(b"cd"))
    transport.write(b"")
    assert loop.run_until(lambda: len(sink.data) == 1004, timeout=TIMEOUT)
    assert sink.data.endswith(b"abcd")
    with pytest.raises(TypeError):
        transport.write("text")
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_buffering_and_back_pressure_when_peer_does_not_read(loop, socketpair, recorder):
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    transport.set_write_buffer_limits(high=64 * 1024)
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    payload = pattern(BIG)
    transport.write(payload)
    assert transport.get_write_buffer_size() > 0
    assert p.paused == 1
    loop.run_until(loop.time() + 0.05)
    assert p.resumed == 0 and transport.get_write_buffer_size() > 0
    sink = Sink(loop, peer)
    assert loop.run_until(lambda: len(sink.data) == BIG, timeout=TIMEOUT)
    assert sink.data == payload
    assert p.resumed == 1 and p.events.count("pause") == 1
    assert transport.get_write_buffer_size() == 0
    transport.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


class Producer(Protocol):
    """Writes as long as it is not paused, from call_soon: the well-behaved producer."""

    chunk = b"p" * 65536

    def __init__(self, loop):
        self.loop = loop
        self.paused = False
        self.pauses = 0
        self.max_buffer = 0
        self.written = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.loop.call_soon(self.produce)

    def produce(self):
        t = self.transport
        if t is None or t.is_closing():
            return
        if not self.paused:
            t.write(self.chunk)
            self.written += len(self.chunk)
            self.max_buffer = max(self.max_buffer, t.get_write_buffer_size())
        self.loop.call_later(0.0005 if self.paused else 0, self.produce)

    def pause_writing(self):
        self.paused = True
        self.pauses += 1

    def resume_writing(self):
        self.paused = False

    def connection_lost(self, exc):
        self.transport = None


def test_memory_bounded_when_peer_never_reads(loop, tcp_pair):
    client, server_side = tcp_pair()  # the client never reads
    server_side.setblocking(False)
    producer = Producer(loop)
    transport, _ = loop.create_connection(lambda: producer, sock=server_side)
    loop.run_until(loop.time() + 0.3)
    assert producer.pauses >= 1 and producer.paused
    high = transport.get_write_buffer_limits()[1]
    assert producer.max_buffer <= high + len(Producer.chunk)
    assert transport.get_write_buffer_size() <= high + len(Producer.chunk)
    transport.abort()
    assert loop.run_until(lambda: producer.transport is None, timeout=TIMEOUT)


class CountingSocket(socket.socket):
    """Counts sends so tests can check that buffered data goes out in gathers."""

    __slots__ = ("sendmsg_calls", "send_calls")

    def sendmsg(self, buffers, *args):
        self.sendmsg_calls += 1
        return super().sendmsg(buffers, *args)

    def send(self, data, *args):
        self.send_calls += 1
        return super().send(data, *args)


def test_buffered_writes_flush_in_one_gather(loop, socketpair, recorder):
    a, b = socketpair()
    sock = CountingSocket(fileno=a.detach())
    sock.sendmsg_calls = sock.send_calls = 0
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, sock=sock)
    assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
    # fill the socket so that the next writes queue
    transport.write(b"f" * (4 * 1024 * 1024))
    assert transport.get_write_buffer_size() > 0
    pieces = [bytes([65 + i % 26]) * 100 for i in range(200)]
    for piece in pieces:
        transport.write(piece)
    transport.writelines([b"<", bytearray(b"lines"), memoryview(b">")])
    sends_before = sock.send_calls + sock.sendmsg_calls
    sink = Sink(loop, b)
    total = 4 * 1024 * 1024 + 200 * 100 + 7
    assert loop.run_until(lambda: len(sink.data) == total, timeout=TIMEOUT)
    assert sink.data[4 * 1024 * 1024:] == b"".join(pieces) + b"<lines>"
    assert sock.sendmsg_calls >= 1
    syscalls = sock.send_calls + sock.sendmsg_calls - sends_before
    # far fewer sends than the 203 queued buffers: they go out gathered
    assert syscalls < 100
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_writelines_at_once(loop, socketpair, recorder):
    p = recorder()
    transport, sink = connected(loop, socketpair, p)
    transport.writelines([b"a", b"", bytearray(b"b"), memoryview(b"c")])
    transport.writelines([])
    transport.writelines([b"single"])
    assert loop.run_until(lambda: sink.data == b"abcsingle", timeout=TIMEOUT)
    assert transport.get_write_buffer_size() == 0
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


@pytest.fixture
def datafile(closing):
    f = closing(tempfile.TemporaryFile())
    data = pattern(3 * 1024 * 1024 + 123, seed=3)
    f.write(data)
    f.flush()
    return f, data


def test_sendfile_small_and_ranges(loop, socketpair, recorder, datafile):
    f, data = datafile
    p = recorder()
    transport, sink = connected(loop, socketpair, p)
    transport.sendfile(f, offset=10, count=100)
    transport.sendfile(f.fileno(), offset=len(data) - 5)  # to the end, by raw fd
    transport.sendfile(f, offset=len(data))  # nothing
    assert loop.run_until(lambda: len(sink.data) == 105, timeout=TIMEOUT)
    assert sink.data == data[10:110] + data[-5:]
    assert f.tell() == len(data)  # the file position is neither used nor changed
    with pytest.raises(ValueError):
        transport.sendfile(f, offset=-1)
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


@pytest.mark.parametrize("queued", [False, True], ids=["at-once", "behind-a-queue"])
def test_sendfile_head_is_written_before_the_file(loop, socketpair, recorder, datafile, queued):
    f, data = datafile
    p = recorder()
    transport, sink = connected(loop, socketpair, p, sink=False)
    before = pattern(BIG if queued else 3)  # BIG: more than the socket takes at once
    transport.write(before)
    assert bool(transport.get_write_buffer_size()) == queued
    transport.sendfile(f, offset=10, count=100, head=bytearray(b"HEAD:"))
    transport.sendfile(f, offset=len(data), head=b"+NO-FILE")  # nothing of the file: the head alone
    transport.write(b"TAIL")
    transport.write_eof()
    sink = Sink(loop, sink)
    assert loop.run_until(lambda: sink.eof, timeout=TIMEOUT)
    assert bytes(sink.data) == before + b"HEAD:" + data[10:110] + b"+NO-FILE" + b"TAIL"
    transport.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def _segments_out(sock):
    """tcpi_segs_out of TCP_INFO (Linux 4.2+), or None."""
    info = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_INFO", 11), 256)
    return struct.unpack_from("I", info, 136)[0] if len(info) >= 140 else None


@pytest.mark.skipif(not hasattr(socket, "MSG_MORE"), reason="MSG_MORE is Linux's")
@pytest.mark.parametrize("short", [False, True], ids=["file", "file-comes-up-short"])
def test_sendfile_head_goes_out_in_one_segment_with_the_file(loop, tcp_pair, recorder, datafile, short):
    # The head is sent "more to follow" (MSG_MORE) so that it shares the
    # file's first segment.  If the file has nothing at offset after all, the
    # transport must push the head itself: the kernel would hold it until
    # its 200 ms probe timer fires.
    f, data = datafile
    client, server_side = tcp_pair()
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, sock=server_side)
    assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
    before = _segments_out(server_side)
    if before is None:
        pytest.skip("TCP_INFO without tcpi_segs_out")
    head = b"HTTP/1.1 200 OK\r\n\r\n"
    offset = len(data) if short else 0
    transport.sendfile(f, offset=offset, count=100, head=head)
    assert _segments_out(server_side) - before == 1  # one segment, sent before sendfile returned
    expected = head + data[offset:offset + 100]
    got = b""
    client.settimeout(TIMEOUT)
    while len(got) < len(expected):
        got += client.recv(4096)
    assert got == expected
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


@pytest.mark.parametrize("copy", [False, True], ids=["sendfile", "pread-fallback"])
def test_sendfile_large_ordered_with_writes_file_closed_early(loop, stream_module, socketpair, recorder, closing,
                                                             monkeypatch, copy):
    if copy:
        monkeypatch.setattr(stream_module, "_sigpipe_ignored", lambda: False)  # the loop's own twin
    data = pattern(3 * 1024 * 1024 + 7, seed=5)
    f = tempfile.TemporaryFile()
    f.write(data)
    f.flush()
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    transport.write(b"HEAD")
    transport.sendfile(f)
    f.close()  # allowed: the transport keeps its own dup of what is pending
    transport.write(b"TAIL")
    transport.write_eof()
    sink = Sink(loop, peer)
    assert loop.run_until(lambda: sink.eof, timeout=TIMEOUT)
    assert bytes(sink.data) == b"HEAD" + data + b"TAIL"
    transport.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_half_close_both_ways(loop, recorder):
    server_proto = recorder(keep_open=True)
    server = loop.create_server(lambda: server_proto, "127.0.0.1", 0)
    client = recorder()  # closes once it has both sent and received EOF
    transport, _ = loop.create_connection(lambda: client, "127.0.0.1", server.port)
    transport.write(b"request")
    transport.write_eof()
    transport.write_eof()  # idempotent
    assert transport.can_write_eof()
    with pytest.raises(RuntimeError):
        transport.write(b"after eof")
    assert loop.run_until(lambda: server_proto.eof, timeout=TIMEOUT)
    assert server_proto.data == b"request"
    # the server's sending side is still open
    server_proto.transport.write(b"response")
    server_proto.transport.close()
    assert loop.run_until(lambda: client.eof and client.lost, timeout=TIMEOUT)
    assert client.data == b"response"
    assert loop.run_until(lambda: server_proto.lost, timeout=TIMEOUT)
    assert server_proto.events[-2:] == ["eof", ("lost", None)]
    server.close()


def test_eof_without_keep_open_closes(loop, socketpair, recorder):
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    peer.shutdown(socket.SHUT_WR)
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    assert p.events == ["made", "eof", ("lost", None)]


def test_close_flushes_first(loop, socketpair, recorder):
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    payload = pattern(BIG, seed=9)
    transport.write(payload)
    transport.close()
    transport.close()  # idempotent
    loop.run_until(loop.time() + 0.02)
    assert not p.lost  # still flushing: the peer has not read yet
    sink = Sink(loop, peer)
    assert loop.run_until(lambda: sink.eof and p.lost, timeout=TIMEOUT)
    assert sink.data == payload and p.lost == "clean"


def test_abort_discards(loop, socketpair, recorder):
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    transport.write(pattern(BIG))
    transport.abort()
    assert transport.get_write_buffer_size() == 0
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    sink = Sink(loop, peer)
    assert loop.run_until(lambda: sink.eof or sink.error, timeout=TIMEOUT)
    assert len(sink.data) < BIG
    transport.write(b"ignored after close")


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_vanished_peer_rst_on_read(loop, tcp_pair, recorder):
    client, server_side = tcp_pair()
    server_side.setblocking(False)
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, sock=server_side)
    assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
    client.send(b"last words")
    _reset(client)
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    assert isinstance(p.lost, ConnectionResetError)
    # no traceback spam: nothing reached the exception handler (checked at teardown)


def test_vanished_peer_rst_on_write(loop, tcp_pair, recorder):
    client, server_side = tcp_pair()
    server_side.setblocking(False)
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, sock=server_side)
    assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
    transport.pause_reading()  # only the write path can notice
    _reset(client)
    for _ in range(100):
        if p.lost:
            break
        transport.write(b"x" * 65536)
        loop.run_until(loop.time() + 0.005)
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    assert isinstance(p.lost, (ConnectionResetError, BrokenPipeError))


def test_pause_and_resume_reading(loop, socketpair, recorder):
    p = recorder()
    transport, peer = connected(loop, socketpair, p, sink=False)
    transport.pause_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    peer.sendall(b"while paused")
    loop.run_until(loop.time() + 0.05)
    assert p.data == b""
    transport.resume_reading()  # no new data arrives: the reactor must look by itself
    assert transport.is_reading()
    assert loop.run_until(lambda: p.data == b"while paused", timeout=TIMEOUT)
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_protocol_error_aborts_the_connection(loop, socketpair):
    class Bad(Protocol):
        lost = None

        def data_received(self, data):
            raise ValueError("bad protocol")

        def connection_lost(self, exc):
            self.lost = exc or "clean"

    bad = Bad()
    a, b = socketpair()
    loop.create_connection(lambda: bad, sock=a)
    b.send(b"x")
    assert loop.run_until(lambda: bad.lost, timeout=TIMEOUT)
    assert isinstance(bad.lost, ValueError)
    errors, loop.errors[:] = list(loop.errors), []
    assert len(errors) == 1 and "data_received" in errors[0]["message"]


def test_connection_made_error_is_reported(loop, socketpair):
    class Bad(Protocol):
        lost = None

        def connection_made(self, transport):
            raise RuntimeError("cannot start")

        def connection_lost(self, exc):
            self.lost = exc

    bad = Bad()
    a, _ = socketpair()
    loop.create_connection(lambda: bad, sock=a)
    assert loop.run_until(lambda: bad.lost, timeout=TIMEOUT)
    assert len(loop.errors) == 1
    loop.errors.clear()


def test_set_protocol_switches_data_received(loop, socketpair, recorder):
    first, second = recorder(), recorder()
    transport, peer = connected(loop, socketpair, first, sink=False)
    transport.set_protocol(second)
    peer.send(b"to second")
    assert loop.run_until(lambda: second.data, timeout=TIMEOUT)
    assert first.data == b""
    transport.abort()
    assert loop.run_until(lambda: second.lost, timeout=TIMEOUT)


def test_data_received_is_the_instances_own_where_it_has_one(loop, socketpair, recorder):
    """The transport calls the class's function with the protocol (no bound method per
    connection) only where that is what ``protocol.data_received`` is: an attribute of
    the instance or a mock's gets its data as it is."""
    from unittest import mock

    own = recorder()
    got = []
    own.data_received = got.append  # set before the connection: the instance's wins
    transport, peer = connected(loop, socketpair, own, sink=False)
    peer.send(b"to the instance")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got == [b"to the instance"] and own.data == b""
    transport.abort()

    m = mock.Mock()
    a, b = socketpair()
    transport, _ = loop.create_connection(lambda: m, sock=a)
    b.send(b"to a mock protocol")
    assert loop.run_until(lambda: m.data_received.called, timeout=TIMEOUT)
    m.data_received.assert_called_once_with(b"to a mock protocol")
    transport.abort()


def test_a_protocol_without_data_received_fails_on_its_first_data(loop, socketpair):
    """As on asyncio: ``data_received`` is looked for when data comes, and its
    absence is that protocol's error (reported; the connection is closed)."""

    class NoData:
        lost = None

        def connection_made(self, transport):
            self.transport = transport

        def connection_lost(self, exc):
            self.lost = exc or True

    p = NoData()
    a, b = socketpair()
    loop.create_connection(lambda: p, sock=a)
    assert loop.run_until(lambda: hasattr(p, "transport"), timeout=TIMEOUT)
    assert not loop.errors
    b.send(b"x")
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    assert len(loop.errors) == 1 and isinstance(loop.errors[0].get("exception"), AttributeError)
    loop.errors.clear()


def test_write_buffer_limits_validation(loop, socketpair, recorder):
    p = recorder()
    transport, _ = connected(loop, socketpair, p)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=10, low=20)
    transport.set_write_buffer_limits(low=1000)
    assert transport.get_write_buffer_limits() == (1000, 4000)
    transport.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


# -- connecting ---------------------------------------------------------------------------


def test_connect_refused_calls_connection_failed(loop, recorder):
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, "127.0.0.1", free_port("127.0.0.1"))
    transport.write(b"queued before the failure")
    assert loop.run_until(lambda: p.failed, timeout=TIMEOUT)
    loop.run_until(loop.time() + 0.01)
    assert isinstance(p.failed, ConnectionRefusedError)
    assert p.failed_count == 1 and p.made == 0 and p.lost_count == 0
    assert transport.is_closing()


def test_connect_failure_without_connection_failed_is_reported(loop):
    class Plain(Protocol):
        pass

    loop.create_connection(Plain, "127.0.0.1", free_port("127.0.0.1"))
    assert loop.run_until(lambda: loop.errors, timeout=TIMEOUT)
    ctx = loop.errors.pop()
    assert isinstance(ctx["exception"], ConnectionRefusedError)


def test_writes_before_connected_are_sent_in_order(loop, recorder):
    server_proto = recorder()
    server = loop.create_server(lambda: server_proto, "127.0.0.1", 0)
    client = recorder()
    transport, _ = loop.create_connection(lambda: client, "127.0.0.1", server.port)
    assert transport.get_extra_info("peername") is None  # not yet
    transport.write(b"early ")
    transport.writelines([b"and ", b"also "])
    transport.write_eof()
    assert loop.run_until(lambda: server_proto.eof, timeout=TIMEOUT)
    assert server_proto.data == b"early and also "
    transport.close()
    assert loop.run_until(lambda: client.lost, timeout=TIMEOUT)
    server.close()


def test_close_before_connected(loop, recorder):
    server = loop.create_server(recorder, "127.0.0.1", 0)
    for close in ("close", "abort"):
        p = recorder()
        transport, _ = loop.create_connection(lambda: p, "127.0.0.1", server.port)
        getattr(transport, close)()
        assert loop.run_until(lambda: p.failed, timeout=TIMEOUT)
        assert isinstance(p.failed, ConnectionAbortedError)
        assert p.made == 0 and p.lost_count == 0
    server.close()


def test_name_resolution_and_timeout(loop, recorder):
    server = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", 0)
    p = recorder()
    transport, _ = loop.create_connection(lambda: p, "localhost", server.port, family=socket.AF_INET)
    transport.write(b"resolved")
    assert loop.run_until(lambda: p.data == b"resolved", timeout=TIMEOUT)
    transport.close()
    # a resolver that never answers: the connect times out
    gate = threading.Event()
    stuck = concurrent.futures.ThreadPoolExecutor(1)
    stuck.submit(gate.wait, TIMEOUT)
    loop.set_default_executor(stuck)
    try:
        q = recorder()
        loop.create_connection(lambda: q, "localhost", server.port, timeout=0.05)
        assert loop.run_until(lambda: q.failed, timeout=TIMEOUT)
        assert isinstance(q.failed, TimeoutError)
    finally:
        gate.set()
        stuck.shutdown(wait=True)
        loop.set_default_executor(None)
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    server.close()


def test_create_connection_argument_errors(loop, socketpair, recorder):
    a, _ = socketpair()
    with pytest.raises(ValueError):
        loop.create_connection(recorder, "127.0.0.1", 1, sock=a)
    with pytest.raises(ValueError):
        loop.create_connection(recorder, "127.0.0.1")
    u, _ = socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with pytest.raises(ValueError):
        loop.create_connection(recorder, sock=u)


def test_unix_connection(loop, recorder, tmp_path):
    path = str(tmp_path / "s.sock")
    server = loop.create_unix_server(lambda: recorder(echo=True), path)
    p = recorder()
    transport, _ = loop.create_unix_connection(lambda: p, path)
    transport.write(b"over unix")
    assert loop.run_until(lambda: p.data == b"over unix", timeout=TIMEOUT)
    transport.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    q = recorder()
    loop.create_unix_connection(lambda: q, str(tmp_path / "nobody.sock"))
    assert loop.run_until(lambda: q.failed, timeout=TIMEOUT)
    assert isinstance(q.failed, FileNotFoundError)
    server.close()


SIGPIPE_CHILD = textwrap.dedent("""
    import signal, socket, struct, sys, tempfile
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what a CLI tool might do
    from fastmux.reactor import Reactor, Protocol

    class P(Protocol):
        lost = None
        def connection_lost(self, exc):
            self.lost = exc or "clean"

    with Reactor(sys.argv[1]) as loop:
        for use_sendfile in (False, True):
            a, b = socket.socketpair()
            p = P()
            t, _ = loop.create_connection(lambda: p, sock=a)
            loop.run_until(lambda: False, timeout=0.01)
            b.close()
            f = tempfile.TemporaryFile()
            f.write(b"x" * 1000000)
            f.flush()
            for _ in range(20):
                if use_sendfile:
                    t.sendfile(f)
                else:
                    t.write(b"y" * 100000)
                loop.run_until(lambda: p.lost, timeout=0.01)
            f.close()
            assert loop.run_until(lambda: p.lost, timeout=5), "no connection_lost"
            assert isinstance(p.lost, (BrokenPipeError, ConnectionResetError)), p.lost
    print("alive")
""")


@pytest.mark.parametrize("backend", ["epoll", "poll"])
def test_sigpipe_never_kills(backend):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(pure_stream.__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SIGPIPE_CHILD, backend], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.strip() == "alive"


def test_write_eof_before_connected(loop, recorder):
    server_proto = recorder(keep_open=True)
    server = loop.create_server(lambda: server_proto, "127.0.0.1", 0)
    client = recorder(keep_open=True)
    transport, _ = loop.create_connection(lambda: client, "127.0.0.1", server.port)
    transport.write_eof()  # nothing written: the shutdown happens once connected
    assert loop.run_until(lambda: server_proto.eof, timeout=TIMEOUT)
    transport.close()
    server_proto.transport.close()
    assert loop.run_until(lambda: client.lost and server_proto.lost, timeout=TIMEOUT)
    server.close()
