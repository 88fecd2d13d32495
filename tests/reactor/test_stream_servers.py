"""Servers: several addresses, Unix sockets, running out of descriptors, sharing a port."""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import fastmux
from fastmux.reactor import Reactor, Server

TIMEOUT = 10.0


def _has_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _talk(addr, family=socket.AF_INET, payload=b"ping"):
    """A connected blocking client that has sent ``payload`` (the loop runs afterwards)."""
    s = socket.socket(family)
    s.settimeout(TIMEOUT)
    s.connect(addr)
    s.sendall(payload)
    return s


def _echo_check(loop, sock, payload=b"ping"):
    sock.setblocking(False)
    got = bytearray()

    def readable():
        try:
            got.extend(sock.recv(1024))
        except BlockingIOError:
            pass

    loop.add_reader(sock, readable)
    try:
        assert loop.run_until(lambda: bytes(got) == payload, timeout=TIMEOUT)
    finally:
        loop.remove_reader(sock)


def test_server_basics(loop, recorder):
    server = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", 0)
    assert isinstance(server, Server)
    assert server.is_serving()
    assert len(server.sockets) == 1 and server.addresses == [("127.0.0.1", server.port)]
    assert "serving" in repr(server)
    s = _talk(("127.0.0.1", server.port))
    try:
        _echo_check(loop, s)
        assert server.connections == 1
        sock = server.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        s.close()
    assert loop.run_until(lambda: server.connections == 0, timeout=TIMEOUT)
    server.close()
    server.close()
    assert not server.is_serving() and server.sockets == ()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sock.getsockname()[1] if sock.fileno() >= 0 else 1), timeout=1)


def test_accepted_sockets_have_nodelay(loop, recorder):
    made = []
    server = loop.create_server(lambda: made.append(recorder()) or made[-1], "127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT):
        assert loop.run_until(lambda: made and made[0].transport, timeout=TIMEOUT)
        sock = made[0].transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert made[0].transport.get_extra_info("peername")[0] == "127.0.0.1"
    server.close()


def test_connections_outlive_server_close(loop, recorder):
    protos = []
    server = loop.create_server(lambda: protos.append(recorder(echo=True)) or protos[-1], "127.0.0.1", 0)
    s = _talk(("127.0.0.1", server.port), payload=b"one")
    try:
        _echo_check(loop, s, b"one")
        server.close()
        s.setblocking(True)
        s.sendall(b"two")
        _echo_check(loop, s, b"two")
    finally:
        s.close()
    assert loop.run_until(lambda: protos[0].lost, timeout=TIMEOUT)


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_several_addresses_one_port(loop, recorder):
    server = loop.create_server(lambda: recorder(echo=True), ["127.0.0.1", "::1"], 0)
    families = sorted(s.family for s in server.sockets)
    assert families == sorted([socket.AF_INET, socket.AF_INET6])
    ports = {a[1] for a in server.addresses}
    assert len(ports) == 1  # port 0 picked one free port for both
    port = ports.pop()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = _talk((host, port), family, b"hi " + host.encode())
        try:
            _echo_check(loop, s, b"hi " + host.encode())
        finally:
            s.close()
    server.close()


def test_host_none_listens_everywhere(loop, recorder):
    server = loop.create_server(recorder, None, 0)
    assert server.sockets
    for addr in server.addresses:
        assert addr[0] in ("0.0.0.0", "::")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT):
        assert loop.run_until(lambda: server.connections == 1, timeout=TIMEOUT)
    server.close()


def test_two_ports_via_two_servers_and_sock(loop, recorder):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(10)
    s1 = loop.create_server(lambda: recorder(echo=True), sock=lsock)
    s2 = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", 0)
    assert s1.port != s2.port
    for port in (s1.port, s2.port):
        c = _talk(("127.0.0.1", port))
        try:
            _echo_check(loop, c)
        finally:
            c.close()
    with pytest.raises(ValueError):
        loop.create_server(recorder, "127.0.0.1", 0, sock=lsock)
    s1.close()
    s2.close()
    assert lsock.fileno() == -1


def test_start_serving_later(loop, recorder):
    server = loop.create_server(recorder, "127.0.0.1", 0, start_serving=False)
    assert not server.is_serving()
    server.start_serving()
    assert server.is_serving()
    server.close()
    with pytest.raises(RuntimeError):
        server.start_serving()


def test_context_manager(loop, recorder):
    with loop.create_server(recorder, "127.0.0.1", 0) as server:
        assert server.is_serving()
    assert not server.is_serving()


def test_factory_error_is_reported(loop):
    def factory():
        raise RuntimeError("no protocol for you")

    server = loop.create_server(factory, "127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as c:
        assert loop.run_until(lambda: loop.errors, timeout=TIMEOUT)
        c.settimeout(TIMEOUT)
        assert c.recv(10) == b""  # the connection was closed
    assert isinstance(loop.errors.pop()["exception"], RuntimeError)
    server.close()


def test_unix_server(loop, recorder, tmp_path):
    path = str(tmp_path / "echo.sock")
    server = loop.create_unix_server(lambda: recorder(echo=True), path)
    assert server.addresses == [path]
    assert server.port is None
    c = socket.socket(socket.AF_UNIX)
    try:
        c.settimeout(TIMEOUT)
        c.connect(path)
        c.sendall(b"unix")
        _echo_check(loop, c, b"unix")
    finally:
        c.close()
    # a second server on the same live path is refused
    with pytest.raises(OSError):
        loop.create_unix_server(recorder, path)
    server.close()
    assert not os.path.exists(path)


def test_unix_server_replaces_stale_socket(loop, recorder, tmp_path):
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens
    server = loop.create_unix_server(recorder, path)
    server.close()
    regular = tmp_path / "regular"
    regular.write_text("not a socket")
    with pytest.raises(OSError):
        loop.create_unix_server(recorder, str(regular))


def test_unix_server_abstract_and_sock(loop, recorder):
    name = f"\0fastmux-test-{os.getpid()}-{id(loop)}"
    server = loop.create_unix_server(lambda: recorder(echo=True), name)
    c = socket.socket(socket.AF_UNIX)
    try:
        c.settimeout(TIMEOUT)
        c.connect(name)
        c.sendall(b"abstract")
        _echo_check(loop, c, b"abstract")
    finally:
        c.close()
    server.close()
    with pytest.raises(ValueError):
        loop.create_unix_server(recorder)


def test_emfile_pauses_accepting_without_spinning(loop, closing, recorder):
    """Out of descriptors: accept fails with EMFILE.  The server must neither spin
    (the pending connection keeps the listener readable) nor die; it resumes when
    a connection closes, and serves the backlog."""
    protos = []
    server = loop.create_server(lambda: protos.append(recorder(echo=True)) or protos[-1], "127.0.0.1", 0)
    n_clients = 12
    clients = [closing(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
               for _ in range(n_clients)]
    # allow exactly 3 more descriptors: the limit caps new fd numbers only, so it
    # goes just past the third free number (fds above it stay valid)
    used = {int(fd) for fd in os.listdir("/proc/self/fd")}
    limit, free = 0, 0
    while free < 3:
        if limit not in used:
            free += 1
        limit += 1
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, saved[1]))
    try:
        assert loop.run_until(lambda: server.accept_pauses >= 1, timeout=TIMEOUT)
        accepted = len(protos)
        assert 0 < accepted < n_clients
        it0 = loop.statistics()["iterations"]
        cpu0 = time.process_time()
        loop.run_until(loop.time() + 0.5)
        cpu = time.process_time() - cpu0
        iterations = loop.statistics()["iterations"] - it0
        assert cpu < 0.25, f"{cpu:.3f}s of CPU in 0.5 s while out of descriptors: spinning"
        assert iterations < 100, f"{iterations} iterations in 0.5 s while out of descriptors"
        assert len(protos) <= accepted + 1
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)
    # descriptors are back: closing one connection resumes accepting at once
    protos[0].transport.close()
    assert loop.run_until(lambda: len(protos) == n_clients, timeout=TIMEOUT)
    for i, c in enumerate(clients):
        c.sendall(b"%d" % i)
    assert loop.run_until(lambda: all(p.data for p in protos[1:]), timeout=TIMEOUT)
    reports = [ctx for ctx in loop.errors if "accept" in ctx["message"]]
    assert reports and all("exception" not in ctx for ctx in reports)  # reported, without traceback
    loop.errors.clear()
    server.close()


REUSE_PORT_CHILD = textwrap.dedent("""
    import os, sys
    from fastmux.reactor import Reactor, Protocol

    class Pid(Protocol):
        def connection_made(self, transport):
            transport.write(str(os.getpid()).encode())
            transport.close()

    with Reactor(edge=sys.argv[2] == "edge") as loop:
        server = loop.create_server(Pid, "127.0.0.1", int(sys.argv[1]), reuse_port=True)
        loop.add_reader(sys.stdin.fileno(), loop.stop)  # the parent closes stdin: stop
        print("ready", flush=True)
        loop.run_forever()
        server.close()
""")


@pytest.mark.parametrize("mode", ["level", "edge"])
def test_reuse_port_shares_a_port_between_processes(mode):
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind(("127.0.0.1", 0))  # reserves the port; not listening, so it takes no connections
    port = probe.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmux.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    children = [subprocess.Popen([sys.executable, "-c", REUSE_PORT_CHILD, str(port), mode], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        pids = set()
        for _ in range(64):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
                c.settimeout(TIMEOUT)
                pids.add(int(c.recv(100)))
            if len(pids) == 2:
                break
        assert pids == {c.pid for c in children}
    finally:
        probe.close()
        for child in children:
            child.stdin.close()
        for child in children:
            try:
                child.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()
    assert all(c.returncode == 0 for c in children)


def test_several_ports_and_several_sockets(loop, recorder):
    server = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", [0, 0])
    ports = [a[1] for a in server.addresses]
    assert len(ports) == 2 and ports[0] != ports[1]
    for port in ports:
        c = _talk(("127.0.0.1", port))
        try:
            _echo_check(loop, c)
        finally:
            c.close()
    server.close()
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        socks.append(s)
    server = loop.create_server(recorder, sock=socks)
    assert len(server.sockets) == 2
    server.close()
    assert all(s.fileno() == -1 for s in socks)
