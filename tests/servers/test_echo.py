"""``fastmux serve echo`` and ``udp-echo`` end to end, and graceful shutdown."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastmux.servers._net import parse_target as parse_addr
from support.net import connect, nc_command, recv_line, recv_until_closed, send_while_reading
from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd

# The tutorial's first pair, client side, ported to Python 3.
TUTORIAL_CLIENT = r'''
import socket
import sys
ip_port = ('127.0.0.1', int(sys.argv[1]))
sk = socket.socket()
sk.connect(ip_port)
sk.sendall('请求占领地球'.encode())
server_reply = sk.recv(1024)
print(server_reply.decode())
sk.close()
'''

# The tutorial's UDP sender, ported to Python 3.
TUTORIAL_UDP_SENDER = r'''
import socket
import sys
ip_port = ('127.0.0.1', int(sys.argv[1]))
sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
while True:
    inp = input('数据: ').strip()
    if inp == 'exit':
        break
    sk.sendto(inp.encode(), ip_port)
sk.close()
'''

BACKENDS = ["epoll", "poll", "select"] if LOOP == "fastmux" else ["default"]


def backend_args(backend: str, edge: bool = False):
    args = [] if backend == "default" else ["--backend", backend]
    return args + (["--edge"] if edge else [])


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    sock_path = tmp_path_factory.mktemp("echo") / "echo.sock"
    with Server("echo", "--port", "0", "--unix", str(sock_path)) as srv:
        yield srv


def roundtrip(address: str, payload: bytes) -> bytes:
    with connect(address) as c:
        return send_while_reading(c, payload, timeout=30)


def test_echo_tcp_and_unix(echo):
    assert len(echo.addresses) == 2
    tcp, unix = echo.addresses
    assert unix.startswith("unix:")
    for address in echo.addresses:
        assert roundtrip(address, b"ping\n") == b"ping\n"


def test_echo_large_payload_integrity(echo):
    payload = os.urandom(8 << 20)
    assert roundtrip(echo.address, payload) == payload


def test_echo_client_that_does_not_read(echo):
    # flow control: the server pauses reading rather than buffering without bound
    with connect(echo.address, timeout=2) as c:
        c.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sent += c.send(b"x" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
                try:
                    sent += c.send(b"x" * 65536)
                except BlockingIOError:
                    break
        assert sent < 256 << 20  # the sender got stuck: backpressure reached it
    assert roundtrip(echo.address, b"still alive") == b"still alive"


def test_many_concurrent_clients(echo):
    clients = [connect(echo.address) for _ in range(100)]
    try:
        for i, c in enumerate(clients):
            c.sendall(b"%d\n" % i)
        for i, c in enumerate(clients):
            assert recv_line(c) == b"%d\n" % i
    finally:
        for c in clients:
            c.close()


def test_tutorial_client(echo, tmp_path):
    script = tmp_path / "tutorial_client.py"
    script.write_text(TUTORIAL_CLIENT)
    proc = subprocess.run([sys.executable, str(script), str(echo.port)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "请求占领地球"


def test_nc(echo):
    proc = subprocess.run(nc_command("127.0.0.1", echo.port), input=b"hello nc\n",
                          capture_output=True, timeout=20)
    assert proc.stdout == b"hello nc\n"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_backends(backend, edge):
    if edge and backend not in ("epoll",):
        pytest.skip("edge-triggered is epoll only")
    with Server("echo", *backend_args(backend, edge)) as srv:
        assert roundtrip(srv.address, b"b" * 300000) == b"b" * 300000
        assert srv.stop() == 0


def test_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).close()
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1")
    with Server("echo", "--host", "::1") as srv:
        assert srv.address.startswith("[::1]:")
        assert roundtrip(srv.address, b"v6") == b"v6"
        assert srv.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_closes_connections_and_exits_0(sig):
    with Server("echo") as srv:
        c = connect(srv.address)
        c.sendall(b"before\n")
        assert recv_line(c) == b"before\n"
        srv.send_signal(sig)
        assert recv_until_closed(c) == b""  # the server closed our connection
        c.close()
        assert srv.proc.wait(20) == 0
        assert "shutting down" in srv.stderr()


def test_second_signal_stops_at_once(tmp_path):
    # a stalled upload would hold the first SIGTERM for the whole grace period
    with Server("upload", "--dir", str(tmp_path), "--grace", "60") as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|slow.bin|100\n")
            assert recv_line(c) == b"ready\n"
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert srv.proc.poll() is None  # waiting for the upload
            srv.send_signal(signal.SIGTERM)
            assert srv.proc.wait(10) == 0
    assert os.listdir(tmp_path) == []


def test_unix_socket_file_is_removed_on_exit(tmp_path):
    path = tmp_path / "e.sock"
    with Server("echo", "--unix", str(path)) as srv:
        assert srv.addresses == [f"unix:{path}"]
        assert roundtrip(srv.address, b"u") == b"u"
        assert srv.stop() == 0
    assert not path.exists()


def test_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays: a crashed server's leftover
    with Server("echo", "--unix", str(path)) as srv:
        assert roundtrip(srv.address, b"u") == b"u"
        proc = subprocess.run(fastmux_cmd("serve", "echo", "--unix", str(path), "--loop", LOOP),
                              capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(ROOT))
        assert proc.returncode == 1 and "already listening" in proc.stderr
        assert srv.stop() == 0


def test_port_in_use_is_reported():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(fastmux_cmd("serve", "echo", "--port", str(port), "--loop", LOOP),
                              capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 1 and "cannot listen" in proc.stderr


# ---- UDP ---------------------------------------------------------------------

def udp_roundtrip(address: str, payload: bytes) -> bytes:
    family, sockaddr = parse_addr(address)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(payload, sockaddr)
        data, _ = s.recvfrom(65536)
        return data


def test_udp_echo():
    with Server("udp-echo") as srv:
        assert udp_roundtrip(srv.address, b"datagram") == b"datagram"
        assert udp_roundtrip(srv.address, "中文".encode()) == "中文".encode()
        big = os.urandom(60000)
        assert udp_roundtrip(srv.address, big) == big
        assert srv.stop() == 0


def test_udp_tutorial_sender_and_fastmux_client(tmp_path):
    with Server("udp-echo") as srv:
        script = tmp_path / "udp_sender.py"
        script.write_text(TUTORIAL_UDP_SENDER)
        proc = subprocess.run([sys.executable, str(script), str(srv.port)], input="a\nb\nexit\n",
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        proc = subprocess.run(fastmux_cmd("client", "udp", srv.address, "--linger", "1", "--loop", LOOP),
                              input="hello\n  world  \nexit\nnever sent\n", capture_output=True, text=True,
                              timeout=30, env=child_env(), cwd=str(ROOT))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["hello", "world"]
        assert srv.stop() == 0


def test_udp_rejects_unix():
    proc = subprocess.run(fastmux_cmd("serve", "udp-echo", "--unix", "/tmp/x.sock", "--loop", LOOP),
                          capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 2 and "--unix" in proc.stderr  # a usage error: udp-echo has no --unix
