"""End to end: ``python -m fastmux serve http`` on fastmux's reactor, spoken
to with http.client, raw sockets, curl and a pipelined burst."""
from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from http_helpers import parse_responses, recv_responses
from support.net import recv_until_closed

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "index.html").write_text("<h1>héllo</h1>", encoding="utf-8")
    (d / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (d / "small.txt").write_text("small\n")
    (d / "sub").mkdir()
    (d / "sub" / "<x>.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", d / "link-out.txt")
    return d


def test_ready_line_and_hello_with_http_client(cli_server):
    srv = cli_server()
    assert srv.loop == "fastmux"
    conn = srv.http()
    for _ in range(3):  # keep-alive: same connection
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"Hello, World"
        assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert r.getheader("Content-Length") == "12" and r.getheader("Date").endswith("GMT")
    conn.request("HEAD", "/")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"" and r.getheader("Content-Length") == "12"
    conn.request("GET", "/missing")
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.close()
    code, err = srv.stop(), srv.stderr()
    assert code == 0, err
    assert "Traceback" not in err


def test_http10_closes(cli_server):
    srv = cli_server()
    with srv.connect() as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = recv_until_closed(s)
    (r,) = parse_responses(data)
    assert r.status == 200 and r.header("Connection") == "close" and r.body == b"Hello, World"


def test_pipelined_burst_in_order(cli_server):
    srv = cli_server()
    paths = [f"/{'' if i % 3 == 0 else 'p%d' % i}" for i in range(300)]
    burst = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
    burst += b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with srv.connect() as s:
        s.sendall(burst)
        data = recv_until_closed(s)
    resps = parse_responses(data)
    assert [r.status for r in resps] == [200 if p == "/" else 404 for p in paths] + [200]
    assert resps[-1].header("Connection") == "close"


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    if len(info) < 160:
        pytest.skip("TCP_INFO without tcpi_data_segs_in (Linux < 4.6)")
    return struct.unpack_from("I", info, 152)[0]  # tcpi_data_segs_in


@pytest.mark.parametrize("loop", ["fastmux", "asyncio"])
def test_pipelined_responses_of_one_read_in_one_send(cli_server, tmp_path, loop):
    # The client counts the data segments that reach it: a response under
    # the MSS sent alone (TCP_NODELAY) is a segment of its own.
    (tmp_path / "segapp.py").write_text(
        "def app(request):\n"
        "    if request.path == '/app':\n"
        "        return 200, [('Content-Type', 'text/plain')], 'from the app'\n"
    )
    srv = cli_server("--app", "segapp:app", cwd=str(tmp_path), loop=loop)
    with srv.connect() as s:
        s.sendall(GET)
        recv_responses(s, 1)
        before = _data_segments_in(s)
        s.sendall((GET + b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /no HTTP/1.1\r\n\r\n") * 6)
        resps = recv_responses(s, 18)
        assert [r.status for r in resps] == [200, 200, 404] * 6
        assert resps[1].body == b"from the app"
        assert _data_segments_in(s) == before + 1


@pytest.mark.parametrize("raw,status", [
    (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
    (b"FROB / HTTP/1.1\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(400)) + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
])
def test_bad_requests_over_a_socket(cli_server, raw, status):
    srv = cli_server()
    with srv.connect() as s:
        s.sendall(raw)
        data = recv_until_closed(s)
    resps = parse_responses(data)
    assert [r.status for r in resps] == [status]
    assert resps[0].header("Connection") == "close"


def test_body_over_limit_413_reaches_a_client_still_sending(cli_server):
    # The lingering close: the 413 must arrive although the client keeps
    # sending a body we will not read.
    srv = cli_server("--max-body", "1000")
    with srv.connect() as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        try:
            for _ in range(20):
                s.sendall(b"x" * 65536)
        except OSError:
            pass
        data = recv_until_closed(s)
    assert parse_responses(data)[0].status == 413


def test_request_split_byte_by_byte(cli_server):
    srv = cli_server()
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in GET:
            s.sendall(bytes([b]))
            time.sleep(0.001)
        (r,) = recv_responses(s, 1)
        assert r.body == b"Hello, World"


def test_idle_keep_alive_timeout(cli_server):
    srv = cli_server("--keepalive-timeout", "1")
    with srv.connect() as s:
        s.sendall(GET)
        t0 = time.monotonic()
        data = recv_until_closed(s, timeout=10)
        elapsed = time.monotonic() - t0
    assert len(parse_responses(data)) == 1
    assert 0.5 < elapsed < 10  # closed by the once-a-second sweep, not at once and not never


def test_slow_headers_time_out(cli_server):
    srv = cli_server("--header-timeout", "1")
    with srv.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answered = False
        for i in range(100):  # a slowloris: one header every 0.1 s, for up to 10 s
            try:
                s.sendall(b"X-%d: y\r\n" % i)
            except OSError:
                break
            if select.select([s], [], [], 0.1)[0]:
                answered = True  # the server spoke before the head was done
                break
        assert answered
        data = recv_until_closed(s, timeout=10)
    assert parse_responses(data)[0].status == 408


def test_vanishing_client_costs_nothing(cli_server, www):
    srv = cli_server("--dir", str(www))
    for _ in range(20):
        s = srv.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST in the middle of the response
    # The server is healthy and has not leaked descriptors.
    conn = srv.http()
    conn.request("GET", "/small.txt")
    assert conn.getresponse().read() == b"small\n"
    conn.close()
    time.sleep(0.3)
    fds = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
    assert fds < 20, os.listdir(f"/proc/{srv.proc.pid}/fd")
    code, err = srv.stop(), srv.stderr()
    assert code == 0 and "Traceback" not in err, err


def test_static_over_sendfile(cli_server, www):
    srv = cli_server("--dir", str(www))
    conn = srv.http()
    conn.request("GET", "/big.bin")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == (www / "big.bin").read_bytes()
    conn.request("GET", "/big.bin", headers={"Range": "bytes=1000000-2999999"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == (www / "big.bin").read_bytes()[1000000:3000000]
    conn.request("GET", "/")
    r = conn.getresponse()
    assert r.read().decode() == "<h1>héllo</h1>" and r.getheader("Content-Type") == "text/html; charset=utf-8"
    lm = r.getheader("Last-Modified")
    conn.request("GET", "/", headers={"If-Modified-Since": lm})
    r = conn.getresponse()
    assert r.status == 304 and r.read() == b""
    conn.request("GET", "/sub/")
    r = conn.getresponse()
    assert b"&lt;x&gt;.txt" in r.read()
    for bad in ("/../outside.txt", "/%2e%2e/outside.txt", "/link-out.txt"):
        conn.request("GET", bad)
        r = conn.getresponse()
        assert r.status == 404 and b"outside" not in r.read()
    conn.close()


def test_pipelined_big_files_and_a_slow_reader(cli_server, www):
    srv = cli_server("--dir", str(www))
    with srv.connect(timeout=30) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 4 + GET.replace(b"/", b"/small.txt", 1))
        time.sleep(0.5)  # the server must wait for us, not buffer 12 MB
        resps = recv_responses(s, 5, timeout=30)
    big = (www / "big.bin").read_bytes()
    assert [r.body == big for r in resps[:4]] == [True] * 4
    assert resps[4].body == b"small\n"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl(cli_server, www):
    srv = cli_server("--dir", str(www))
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-i", f"{srv.url}/small.txt", f"{srv.url}/small.txt"],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(b"HTTP/1.1 200 OK") == 2 and out.stdout.count(b"small\n") == 2
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          "-r", "0-99", f"{srv.url}/big.bin"], capture_output=True, timeout=20)
    assert out.stdout == b"206 100"
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "%{http_code}", "-o", "/dev/null",
                          "--path-as-is", f"{srv.url}/../outside.txt"], capture_output=True, timeout=20)
    assert out.stdout == b"404"
    # Expect: 100-continue on an upload (curl sends it for bodies over 1 KiB).
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "%{http_code}", "-o", "/dev/null",
                          "--data-binary", "@" + str(www / "big.bin"), f"{srv.url}/"], capture_output=True, timeout=20)
    assert out.stdout == b"413"


def test_app_hook_through_the_cli(cli_server, tmp_path):
    (tmp_path / "myhttpapp.py").write_text(
        "def app(request):\n"
        "    if request.path == '/echo':\n"
        "        return 200, [('Content-Type', 'application/octet-stream')], request.body\n"
        "    if request.path == '/hi':\n"
        "        return 200, {'X-App': 'yes'}, 'hi ' + request.query\n"
        "    return None\n"
    )
    srv = cli_server("--app", "myhttpapp:app", cwd=str(tmp_path))
    conn = srv.http()
    conn.request("POST", "/echo", body=b"payload" * 1000)
    assert conn.getresponse().read() == b"payload" * 1000
    conn.request("GET", "/hi?there")
    r = conn.getresponse()
    assert r.read() == b"hi there" and r.getheader("X-App") == "yes"
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, World"
    conn.close()


def test_concurrent_clients(cli_server):
    srv = cli_server()
    errors = []

    def client():
        try:
            conn = srv.http()
            for _ in range(50):
                conn.request("GET", "/")
                assert conn.getresponse().read() == b"Hello, World"
            conn.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_graceful_shutdown_finishes_request_in_progress(cli_server):
    srv = cli_server()
    with srv.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # head not finished
        time.sleep(0.2)
        srv.proc.send_signal(15)
        time.sleep(0.2)
        s.sendall(b"\r\n")
        data = recv_until_closed(s)
    (r,) = parse_responses(data)
    assert r.status == 200 and r.header("Connection") == "close"
    assert srv.proc.wait(10) == 0


def test_same_protocol_on_asyncio(cli_server):
    srv = cli_server(loop="asyncio")
    with srv.connect() as s:
        s.sendall(GET * 3 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert [r.status for r in parse_responses(recv_until_closed(s))] == [200] * 4
