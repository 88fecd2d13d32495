"""``fastmux.socketserver``: the stdlib module's names and behaviour, fastmux's selector.

The usage patterns are the stdlib documentation's and the tutorial's.
"""
from __future__ import annotations

import os
import socket
import socketserver as std
import threading
import time

import pytest

import fastmux.selectors
import fastmux.socketserver as socketserver
from support.net import recv_until_closed

TIMEOUT = 10


def test_every_public_name_is_there():
    public = [n for n in dir(std) if not n.startswith("_")]
    for name in public:
        assert hasattr(socketserver, name), name
    assert socketserver.__all__ == std.__all__
    for name in std.__all__:
        ours, theirs = getattr(socketserver, name), getattr(std, name)
        assert issubclass(ours, theirs), name  # isinstance checks against the stdlib keep working


def test_selector_is_fastmuxs():
    assert socketserver._ServerSelector.__module__.startswith("fastmux")
    assert socketserver._ServerSelector is fastmux.selectors.PollSelector


def test_class_relationships_match_the_stdlib():
    assert issubclass(socketserver.UDPServer, socketserver.TCPServer)
    assert issubclass(socketserver.ThreadingTCPServer, socketserver.ThreadingMixIn)
    assert socketserver.UDPServer.socket_type == socket.SOCK_DGRAM
    assert socketserver.UnixStreamServer.address_family == socket.AF_UNIX
    assert socketserver.ThreadingTCPServer.daemon_threads is False
    assert socketserver.ThreadingTCPServer.block_on_close is True


class CountingSelector(fastmux.selectors.PollSelector):
    made = 0

    def __init__(self):
        super().__init__()
        CountingSelector.made += 1


@pytest.fixture
def counting(monkeypatch):
    CountingSelector.made = 0
    monkeypatch.setattr(socketserver, "_ServerSelector", CountingSelector)
    return CountingSelector


class MenuHandler(socketserver.BaseRequestHandler):
    """The tutorial's SocketServer menu handler, Python 3."""

    def handle(self):
        conn = self.request
        conn.sendall("欢迎致电 10086,请输入1xxx,0转人工服务.".encode())
        flag = True
        while flag:
            data = conn.recv(1024).decode()
            if data == "exit" or not data:
                flag = False
            elif data == "0":
                conn.sendall("通过可能会被录音.balabala一大推".encode())
            else:
                conn.sendall("请重新输入.".encode())


def serve_in_thread(server, poll_interval=0.05):
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
    t.start()
    return t


def stop(server, thread):
    server.shutdown()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_threading_tcp_server_tutorial_menu(counting):
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), MenuHandler) as server:
        t = serve_in_thread(server)
        clients = [socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(5)]
        try:
            for c in clients:  # all five served at once: one thread each
                assert c.recv(1024).decode().startswith("欢迎致电")
            for c in clients:
                c.sendall(b"0")
                assert c.recv(1024).decode() == "通过可能会被录音.balabala一大推"
                c.sendall(b"exit")
        finally:
            for c in clients:
                c.close()
        stop(server, t)
    assert counting.made == 1  # serve_forever waited on fastmux's selector


def test_stream_request_handler_lines():
    class Upper(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line.upper())

    with socketserver.TCPServer(("127.0.0.1", 0), Upper) as server:
        t = serve_in_thread(server)
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
            c.sendall(b"abc\ndef\n")
            c.shutdown(socket.SHUT_WR)
            assert recv_until_closed(c) == b"ABC\nDEF\n"
        stop(server, t)


def test_udp_server_and_datagram_handler():
    class Echo(socketserver.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read())

    with socketserver.ThreadingUDPServer(("127.0.0.1", 0), Echo) as server:
        t = serve_in_thread(server)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.sendto(b"dgram", server.server_address)
            assert c.recvfrom(100)[0] == b"dgram"
        stop(server, t)


def test_unix_stream_server(tmp_path):
    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(self.request.recv(100))

    path = str(tmp_path / "ss.sock")
    with socketserver.ThreadingUnixStreamServer(path, Echo) as server:
        t = serve_in_thread(server)
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(TIMEOUT)
            c.connect(path)
            c.sendall(b"unix")
            assert c.recv(100) == b"unix"
        stop(server, t)


def test_handle_request_timeout_and_one_request(counting):
    timeouts = []

    class Srv(socketserver.TCPServer):
        timeout = 0.1

        def handle_timeout(self):
            timeouts.append(1)

    class Once(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"one")

    with Srv(("127.0.0.1", 0), Once) as server:
        t0 = time.monotonic()
        server.handle_request()  # nobody connects: times out
        assert timeouts == [1] and 0.05 < time.monotonic() - t0 < 5
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
            server.handle_request()
            assert c.recv(10) == b"one"
    assert counting.made == 2


def test_shutdown_from_another_thread_is_prompt():
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as server:
        t = serve_in_thread(server, poll_interval=1.0)
        time.sleep(0.1)
        t0 = time.monotonic()
        stop(server, t)  # the stdlib's behaviour: noticed within poll_interval
        assert time.monotonic() - t0 < 3


def test_service_actions_run_in_serve_forever():
    calls = []

    class Srv(socketserver.TCPServer):
        def service_actions(self):
            calls.append(1)

    with Srv(("127.0.0.1", 0), socketserver.BaseRequestHandler) as server:
        t = serve_in_thread(server, poll_interval=0.01)
        deadline = time.monotonic() + TIMEOUT
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop(server, t)
    assert len(calls) >= 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # 3.12+: fork is the point
def test_forking_tcp_server():
    class Pid(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(str(os.getpid()).encode())

    with socketserver.ForkingTCPServer(("127.0.0.1", 0), Pid) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
            server.handle_request()
            child = int(c.recv(20))
        assert child != os.getpid()
        server.server_close()  # waits for the child (block_on_close)


def test_tutorial_upload_server_on_fastmux_socketserver(tmp_path):
    """The tutorial's SocketServer upload server, Python 3, unchanged but for its path."""
    base_path = str(tmp_path)

    class MyServer(socketserver.BaseRequestHandler):
        def handle(self):
            conn = self.request
            pre_data = conn.recv(1024).decode()
            cmd, file_name, file_size = pre_data.split("|")
            conn.sendall(b"nothing")
            recv_size = 0
            with open(os.path.join(base_path, file_name), "wb") as f:
                while int(file_size) > recv_size:
                    data = conn.recv(1024)
                    recv_size += len(data)
                    f.write(data)

    payload = os.urandom(50000)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), MyServer) as server:
        t = serve_in_thread(server)
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
            c.sendall(b"put|t.bin|%d" % len(payload))
            assert c.recv(1024) == b"nothing"
            c.sendall(payload)
        stop(server, t)
    assert (tmp_path / "t.bin").read_bytes() == payload
