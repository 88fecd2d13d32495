"""The server protocols in-process, on asyncio and on fastmux's reactor alike.

The same protocol classes must run on both loops (``_runtime.py``); these
tests run each one on each loop in a background thread and talk to it with
blocking sockets, then shut it down through ``GracefulShutdown``.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import threading
import time

import pytest

from fastmux.servers import _net, echo, menu, udp_echo, upload
from fastmux.servers._runtime import AsyncioRuntime, ReactorRuntime
from fastmux.servers.context import ServeContext
from fastmux.servers.shutdown import Connections, GracefulShutdown

from support.net import connect, recv_line, recv_until_closed, send_while_reading


def _reactor_runtime():
    try:
        return ReactorRuntime()
    except ImportError as exc:
        pytest.skip(f"fastmux.reactor not available: {exc}")


@pytest.fixture(params=["asyncio", "fastmux"])
def runtime(request):
    rt = AsyncioRuntime(asyncio.new_event_loop()) if request.param == "asyncio" else _reactor_runtime()
    yield rt
    if not rt.loop.is_closed():
        rt.close()


class Running:
    """Servers on a runtime, its loop in a thread; ``stop()`` shuts down gracefully."""

    def __init__(self, runtime, kind_module, args=None, udp=False, grace=5.0):
        self.runtime = runtime
        self.ctx = ServeContext(runtime)
        self.shutdown = GracefulShutdown(runtime, self.ctx.conns, grace)
        factory = kind_module.make_protocol_factory(args or argparse.Namespace(), runtime.loop, self.ctx)
        self.sock = _net.bind_inet("127.0.0.1", 0, udp=udp)[0]
        self.address = _net.sock_address(self.sock)
        serve = runtime.serve_datagram if udp else runtime.serve
        self.shutdown.listeners.append(serve(factory, self.sock))
        self.thread = threading.Thread(target=runtime.run_forever, daemon=True)
        self.thread.start()

    def stop(self, timeout=10.0):
        self.runtime.call_soon_threadsafe(self.shutdown.request)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "loop did not stop"
        self.ctx.close()
        self.runtime.close()
        self.sock.close()


def test_echo(runtime):
    srv = Running(runtime, echo)
    try:
        with connect(srv.address) as c:
            payload = os.urandom(1 << 20)
            assert send_while_reading(c, payload, timeout=20) == payload
    finally:
        srv.stop()


def test_echo_shutdown_closes_open_connections(runtime):
    srv = Running(runtime, echo)
    c = connect(srv.address)
    try:
        c.sendall(b"x")
        assert c.recv(1) == b"x"
        srv.stop()
        assert recv_until_closed(c) == b""
    finally:
        c.close()


def test_udp_echo(runtime):
    srv = Running(runtime, udp_echo, udp=True)
    try:
        family, sockaddr = _net.parse_target(srv.address)
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"dg", sockaddr)
            assert s.recvfrom(100)[0] == b"dg"
    finally:
        srv.stop()


def test_menu_and_offload(runtime):
    args = argparse.Namespace(menu=None, max_line=100, idle_timeout=30.0, quiet=menu.QUIET)
    srv = Running(runtime, menu, args)
    try:
        with connect(srv.address) as c:
            assert recv_line(c).decode().startswith("欢迎致电")
            c.sendall(b"0\n1004\nbad\n")  # 1004: thread pool
            assert recv_line(c).decode().startswith("通过可能")
            assert recv_line(c).decode().startswith("人工服务排队中")
            assert recv_line(c).decode() == "请重新输入.\n"
            c.sendall(b"exit\n")
            assert recv_until_closed(c) == b""
    finally:
        srv.stop()


def test_offload_to_process_pool_delivers_on_the_loop_thread(runtime):
    ctx = ServeContext(runtime)
    seen = []

    def done(fut):
        seen.append((fut.result(), threading.get_ident()))
        runtime.stop()

    loop_thread = []
    runtime.call_soon(lambda: loop_thread.append(threading.get_ident()))
    runtime.call_soon(lambda: ctx.offload("process", menu.monthly_bill, "1002", done=done))
    watchdog = runtime.call_later(30, runtime.stop)
    t = threading.Thread(target=runtime.run_forever, daemon=True)
    t.start()
    t.join(40)
    watchdog.cancel()
    ctx.close()
    assert not t.is_alive()
    assert seen and seen[0][0].startswith("本月账单:")
    assert seen[0][1] == loop_thread[0]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_upload_and_graceful_shutdown(runtime, tmp_path, mode):
    args = argparse.Namespace(dir=str(tmp_path), max_size=1 << 30, idle_timeout=30.0, header_quiet=0.2,
                              write_mode=mode, fsync=True, mode=None)
    srv = Running(runtime, upload, args)
    data = os.urandom((3 << 20) + 17)
    try:
        with connect(srv.address) as c:
            c.sendall(b"put|f.bin|%d\n" % len(data))
            assert recv_line(c) == b"ready\n"
            c.sendall(data)
            assert recv_line(c) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
        # an upload in flight when shutdown starts is finished, then closed
        c = connect(srv.address)
        c.sendall(b"put|g.bin|6\n")
        assert recv_line(c) == b"ready\n"
        c.sendall(b"abc")
        srv.runtime.call_soon_threadsafe(srv.shutdown.request)
        time.sleep(0.2)
        c.sendall(b"def")
        assert recv_line(c).startswith(b"ok ")
        assert recv_until_closed(c) == b""
        c.close()
        srv.thread.join(10)
    finally:
        srv.stop()
    assert (tmp_path / "f.bin").read_bytes() == data
    assert (tmp_path / "g.bin").read_bytes() == b"abcdef"
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "g.bin"]


def test_connections_drain_and_abort():
    class Conn:
        def __init__(self, conns):
            self.conns = conns
            self.events = []

        def shutdown(self):
            self.events.append("shutdown")

        def abort(self):
            self.events.append("abort")

    conns = Connections()
    a, b = Conn(conns), Conn(conns)
    conns.add(a)
    conns.add(b)
    emptied = []
    conns.drain(lambda: emptied.append(1))
    assert a.events == b.events == ["shutdown"] and not emptied
    conns.discard(a)
    assert not emptied
    conns.discard(b)
    assert emptied == [1]
    late = Conn(conns)
    conns.add(late)  # accepted while draining: asked to finish at once
    assert late.events == ["shutdown"]
    conns.abort_all()
    assert late.events == ["shutdown", "abort"] and len(conns) == 0


def test_parse_header_and_safe_name():
    assert upload.parse_header(b"put|a.txt|12") == ("a.txt", 12)
    assert upload.parse_header(b"a.txt|0") == ("a.txt", 0)
    assert upload.parse_header(b"put| spaced.txt |  7 ") == ("spaced.txt", 7)
    for bad, code in [(b"put|a|-1", "bad-size"), (b"put|../a|1", "bad-name"), (b"x", "bad-header"),
                      (b"get|a|1", "bad-command"), (b"put|a|" + b"9" * 20, "too-large")]:
        with pytest.raises(upload.UploadError) as info:
            upload.parse_header(bad)
        assert info.value.code == code


def test_menu_extension_validation():
    m = menu.Menu().extended({"entries": {"1888": "x", "0": None}, "replace": False})
    assert m.entries["1888"] == "x" and "0" not in m.entries and "1000" in m.entries
    m = menu.Menu().extended({"entries": {"1": "only"}, "replace": True})
    assert dict(m.entries) == {"1": "only"}
    with pytest.raises(menu.MenuError):
        menu.Menu().extended({"entries": {" 1": "padded code"}})
    with pytest.raises(menu.MenuError):
        menu.Menu().extended({"entries": {"1": {"call": "fastmux.servers.menu:queue_position", "pool": "gpu"}}})


def test_thread_mode_batches_of_many_tiny_chunks(tmp_path):
    # more chunks than IOV_MAX in one batch (a slow client's 1-byte segments)
    chunks = [bytes([i % 256]) for i in range(5000)]
    sha = hashlib.sha256()
    path = tmp_path / "tiny"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        upload._write_batch(fd, sha, chunks)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)
    assert sha.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
