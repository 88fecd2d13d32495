"""Datagram endpoints: UDP and Unix datagrams, connected or not, errors, buffering."""
from __future__ import annotations

import socket

import pytest

from fastmux.reactor import DatagramProtocol

TIMEOUT = 10.0


class Dgram(DatagramProtocol):
    def __init__(self, echo=False):
        self.echo = echo
        self.transport = None
        self.got = []
        self.errors = []
        self.lost = None
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost = exc or "clean"

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


def test_udp_echo(loop, datagram_module):
    server_t, server_p = loop.create_datagram_endpoint(lambda: Dgram(echo=True), local_addr=("127.0.0.1", 0))
    assert isinstance(server_t, datagram_module.DatagramTransport)  # the loop's own twin
    addr = server_t.get_extra_info("sockname")
    client_t, client_p = loop.create_datagram_endpoint(Dgram, remote_addr=addr)
    assert loop.run_until(lambda: client_p.transport and server_p.transport, timeout=TIMEOUT)
    assert client_t.get_extra_info("peername") == addr
    for i in range(10):
        client_t.sendto(b"d%d" % i)
    client_t.sendto(bytearray(b""))  # an empty datagram is a datagram
    assert loop.run_until(lambda: len(client_p.got) == 11, timeout=TIMEOUT)
    assert sorted(d for d, _ in client_p.got) == sorted([b"d%d" % i for i in range(10)] + [b""])
    assert server_p.got[0][1] == client_t.get_extra_info("sockname")
    with pytest.raises(ValueError):
        client_t.sendto(b"x", ("127.0.0.1", 1))
    with pytest.raises(TypeError):
        client_t.sendto("text")
    client_t.close()
    server_t.close()
    assert loop.run_until(lambda: client_p.lost and server_p.lost, timeout=TIMEOUT)
    assert client_p.lost == "clean"
    assert client_t.get_extra_info("socket") is None


def test_unconnected_sendto(loop, closing):
    peer = closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(TIMEOUT)
    t, p = loop.create_datagram_endpoint(Dgram, family=socket.AF_INET)
    t.sendto(b"hello", peer.getsockname())
    data, addr = peer.recvfrom(100)
    assert data == b"hello"
    peer.sendto(b"back", addr)
    assert loop.run_until(lambda: p.got, timeout=TIMEOUT)
    assert p.got == [(b"back", peer.getsockname())]
    t.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_icmp_refused_goes_to_error_received(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()  # nobody listens there once closed
    t, p = loop.create_datagram_endpoint(Dgram, remote_addr=dead)
    assert loop.run_until(lambda: p.transport, timeout=TIMEOUT)
    for _ in range(5):
        t.sendto(b"anyone?")
        if loop.run_until(lambda: p.errors, timeout=0.2):
            break
    assert p.errors and isinstance(p.errors[0], ConnectionRefusedError)
    assert not t.is_closing()  # not fatal
    t.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_protocol_error_keeps_endpoint(loop):
    class Bad(Dgram):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"bad":
                raise ValueError("bad datagram")

    t, p = loop.create_datagram_endpoint(Bad, local_addr=("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"bad", t.get_extra_info("sockname"))
        s.sendto(b"good", t.get_extra_info("sockname"))
        assert loop.run_until(lambda: len(p.got) == 2, timeout=TIMEOUT)
    assert isinstance(loop.errors.pop()["exception"], ValueError)
    t.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_unix_datagram_buffering_and_back_pressure(loop, tmp_path):
    """A Unix datagram peer that does not read fills up: sendto queues, pauses the
    protocol, and everything is delivered in order once the peer reads."""
    path = str(tmp_path / "peer.sock")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        peer.bind(path)
        t, p = loop.create_datagram_endpoint(Dgram, remote_addr=path, family=socket.AF_UNIX)
        assert loop.run_until(lambda: p.transport, timeout=TIMEOUT)
        t.set_write_buffer_limits(high=8192)
        n = 0
        while t.get_write_buffer_size() < 20000 and n < 100000:
            t.sendto(b"%08d" % n + b"." * 1000)
            n += 1
        assert t.get_write_buffer_size() >= 20000
        assert p.paused == 1
        peer.settimeout(TIMEOUT)
        got = []
        peer.setblocking(False)

        def drain():
            try:
                while True:
                    got.append(peer.recv(2000))
            except BlockingIOError:
                pass

        loop.add_reader(peer, drain)
        assert loop.run_until(lambda: len(got) == n, timeout=TIMEOUT)
        loop.remove_reader(peer)
        assert [int(g[:8]) for g in got] == list(range(n))
        assert p.resumed == 1 and t.get_write_buffer_size() == 0
        t.close()
        assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    finally:
        peer.close()


def test_new_write_buffer_limits_apply_at_once(loop, tmp_path):
    """As for streams (the transports share them): a high-water mark lowered below
    what is queued pauses the protocol, one raised above it resumes it."""
    path = str(tmp_path / "peer.sock")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        peer.bind(path)  # and never reads
        t, p = loop.create_datagram_endpoint(Dgram, remote_addr=path, family=socket.AF_UNIX)
        assert loop.run_until(lambda: p.transport, timeout=TIMEOUT)
        n = 0
        while t.get_write_buffer_size() < 20000 and n < 100000:
            t.sendto(b"." * 1000)
            n += 1
        assert p.paused == 0  # below the default high-water mark
        t.set_write_buffer_limits(high=8192)
        assert (p.paused, p.resumed) == (1, 0)
        t.set_write_buffer_limits(high=1 << 20)
        assert (p.paused, p.resumed) == (1, 1)
        assert t.get_write_buffer_limits() == ((1 << 20) // 4, 1 << 20)
        t.abort()
        assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    finally:
        peer.close()


def test_unix_datagram_bound_endpoint(loop, tmp_path):
    path = str(tmp_path / "server.sock")
    t, p = loop.create_datagram_endpoint(lambda: Dgram(echo=True), local_addr=path, family=socket.AF_UNIX)
    client_path = str(tmp_path / "client.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
        c.bind(client_path)
        c.settimeout(TIMEOUT)
        c.sendto(b"unix dgram", path)
        assert loop.run_until(lambda: p.got, timeout=TIMEOUT)
        assert p.got == [(b"unix dgram", client_path)]
        assert c.recv(100) == b"unix dgram"
    t.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_existing_socket(loop, closing):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    t, p = loop.create_datagram_endpoint(Dgram, sock=sock)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"via sock", sock.getsockname())
        assert loop.run_until(lambda: p.got, timeout=TIMEOUT)
    with pytest.raises(ValueError):
        loop.create_datagram_endpoint(Dgram, local_addr=("127.0.0.1", 0), sock=sock)
    stream = closing(socket.socket())
    with pytest.raises(ValueError):
        loop.create_datagram_endpoint(Dgram, sock=stream)
    with pytest.raises(ValueError):
        loop.create_datagram_endpoint(Dgram)
    t.abort()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_burst_is_served_fairly(loop):
    """Many datagrams at once: all arrive (edge-triggered: via the re-queue)."""
    t, p = loop.create_datagram_endpoint(Dgram, local_addr=("127.0.0.1", 0))
    assert loop.run_until(lambda: p.transport, timeout=TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(200):
            s.sendto(b"%d" % i, t.get_extra_info("sockname"))
        assert loop.run_until(lambda: len(p.got) == 200, timeout=TIMEOUT)
    t.close()
    assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
