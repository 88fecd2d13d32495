"""Faults that break servers in production, against real ``fastmux serve``
processes.

Each test fails if the fault costs data (a witness connection and fresh
clients must get every byte), a crash (the server must be alive and answer),
a leak (its descriptor count, read from ``/proc/<pid>/fd``, comes back to
the baseline) or a busy loop (its CPU time over a quiet interval stays near
zero).  Server logs must stay free of tracebacks and ERROR lines except the
ones a test expects.

The CPU bounds are deliberately coarse (a spinning loop burns a whole core;
these allow a few percent of one), so they hold on a loaded CI box.

Modes (see ``hardening_helpers``): the transport-level faults run on every
backend and trigger mode of the compiled core plus the fallback
(``FAULT_MODES``: c-epoll, c-epoll-edge, c-poll, c-select, py-epoll); the
in-process reactor tests (threads, fork, fd traps) on every implementation
x backend x trigger mode; the faults that live in one server kind's own
code (uploads, HTTP, signals) on the default mode.
"""
from __future__ import annotations

import re
import hashlib
import importlib
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

from hardening_helpers import (
    COMPILED, FAULT_MODES, Counter, assert_healthy, echo_ok, fill_without_reading, http_get, many_sockets, menu_ok,
    mode_params, report, upload,
)
from support.http import FakeTransport
from support.net import MIB, TIMEOUT, connect, recv_exactly, recv_line, recv_until_closed, rst_close, send_while_reading
from support.procs import children
from support.server import Server, fastmux_cmd, wait_for

# -- 1. peers that reset, half-close, vanish, never read, or trickle ------------------------


@pytest.mark.parametrize("mode", mode_params(FAULT_MODES))
def test_peer_resets_mid_write(mode):
    """Clients that make the server buffer output and then reset (RST, or a close
    with unread data, which the kernel turns into RST): the server meets
    ECONNRESET/EPIPE in send, drops those connections quietly, loses nothing
    of a witness connection's stream and leaks nothing."""
    with Server("echo", mode=mode) as srv:
        assert echo_ok(srv)
        base = srv.fds()
        with connect(srv) as witness:
            witness.sendall(b"before")
            assert recv_exactly(witness, 6) == b"before"
            blob = os.urandom(1 << 20)
            for i in range(12):
                c = connect(srv)
                # the echo comes back but is never read: the server's send
                # buffer fills and it pauses reading us
                fill_without_reading(c, blob, seconds=0.3, max_bytes=8 * MIB)
                if i % 3 == 0:
                    rst_close(c)
                elif i % 3 == 1:
                    c.close()  # unread data in our buffer: the kernel sends RST
                else:
                    c.shutdown(socket.SHUT_RDWR)
                    rst_close(c)
            payload = os.urandom(3 * MIB + 17)
            sender = threading.Thread(target=witness.sendall, args=(payload,))
            sender.start()
            got = recv_exactly(witness, len(payload))
            sender.join(TIMEOUT)
            assert got == payload, "the witness connection lost or mixed bytes"
        assert_healthy(srv, echo_ok, fds=base)
        srv.assert_clean_log()


SIGPIPE_DEFAULT_HTTP = (
    "import signal, sys; signal.signal(signal.SIGPIPE, signal.SIG_DFL); "
    "from fastmux.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("sigpipe", ["ignored", "default"])
def test_sigpipe_never_kills_a_server_whose_peers_reset_mid_file(tmp_path, sigpipe):
    """Clients reset in the middle of a large file response (os.sendfile while
    SIGPIPE is ignored, Python's default; pread + send(MSG_NOSIGNAL) in a
    program that restored SIG_DFL).  The process never dies of SIGPIPE, the
    dup'd file descriptors of the abandoned responses are released, and the
    file is still served whole."""
    body = os.urandom(8 * MIB)
    (tmp_path / "big.bin").write_bytes(body)
    args = ["serve", "http", "--port", "0", "--dir", str(tmp_path), "--log-level", "info"]
    argv = [sys.executable, "-c", SIGPIPE_DEFAULT_HTTP, *args] if sigpipe == "default" else fastmux_cmd(*args)
    with Server("http", argv=argv) as srv:
        assert http_get(srv, "/big.bin") == (200, body)
        base = srv.fds()
        for i in range(16):
            c = connect(srv)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n" * (1 + i % 2))
            assert c.recv(1000)  # the response has started
            if i % 2:
                rst_close(c)
            else:
                c.close()  # unread data: RST
        assert srv.alive(), f"killed (exit {srv.proc.returncode}): SIGPIPE?"
        assert_healthy(srv, lambda s: http_get(s, "/big.bin") == (200, body), fds=base)
        srv.assert_clean_log()


@pytest.mark.parametrize("mode", mode_params(FAULT_MODES))
def test_client_half_close_still_gets_every_byte(mode):
    """The client sends, shuts down its write side and keeps reading: the echo
    server flushes everything it owes (megabytes still in flight), then closes."""
    with Server("echo", mode=mode) as srv:
        base = srv.fds()
        for size in (1, 70000, 4 * MIB + 3):
            payload = os.urandom(size)
            with connect(srv) as c:
                def send() -> None:
                    c.sendall(payload)
                    c.shutdown(socket.SHUT_WR)
                sender = threading.Thread(target=send)
                sender.start()
                got = recv_until_closed(c)
                sender.join(TIMEOUT)
            assert got == payload, f"{size} bytes sent, {len(got)} echoed before EOF"
        assert_healthy(srv, echo_ok, fds=base)
        srv.assert_clean_log()


def test_half_close_both_ways_http(tmp_path):
    """Client half-close: a pipelined burst then SHUT_WR gets every response,
    then EOF.  Server half-close: after a ``Connection: close`` response the
    server shuts its write side and discards what the client still sends (a
    lingering close), so the client reads the whole response, never a reset."""
    body = os.urandom(300000)
    (tmp_path / "f.bin").write_bytes(body)
    with Server("http", "--dir", str(tmp_path)) as srv:
        base = srv.fds()
        with connect(srv) as c:
            c.sendall(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 20 + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            c.shutdown(socket.SHUT_WR)
            data = recv_until_closed(c)
        assert data.count(b"HTTP/1.1 200 ") == 21
        assert data.count(body) == 20
        with connect(srv) as c:
            c.sendall(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            garbage = b"x" * 65536
            for _ in range(20):  # the client goes on writing after the server's FIN
                c.sendall(garbage)
            data = recv_until_closed(c)
        assert data.endswith(body) and b"Connection: close" in data.split(b"\r\n\r\n")[0]
        assert_healthy(srv, lambda s: http_get(s)[0] == 200, fds=base)
        srv.assert_clean_log()


def test_half_close_upload_and_menu(tmp_path):
    """An upload whose client sends everything and shuts down its write side
    still gets its ``ok``; a menu client that half-closes gets every reply,
    including one computed off the loop."""
    with Server("upload", "--dir", str(tmp_path)) as up:
        data = os.urandom(3 * MIB)
        with connect(up) as c:
            c.sendall(b"put|half.bin|%d\n" % len(data))
            assert recv_line(c) == b"ready\n"
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            assert recv_until_closed(c) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
        assert (tmp_path / "half.bin").read_bytes() == data
        up.assert_clean_log()
    with Server("menu") as menu:
        with connect(menu) as c:
            c.sendall(b"1000\n1004\n\xff\n1001\n")
            c.shutdown(socket.SHUT_WR)
            lines = recv_until_closed(c).decode().splitlines()
        assert len(lines) == 5, lines  # welcome + four replies
        assert "余额" in lines[1] and "排队" in lines[2] and "UTF-8" in lines[3] and "流量" in lines[4]
        menu.assert_clean_log()


def _vanishers(srv: Server, starts: List[bytes], count: int) -> None:
    """``count`` clients that connect and vanish, in every manner."""
    for i in range(count):
        c = connect(srv)
        start = starts[i % len(starts)]
        if start:
            c.sendall(start)
        how = i % 4
        if how == 0:
            c.close()
        elif how == 1:
            rst_close(c)
        elif how == 2:
            c.shutdown(socket.SHUT_WR)
            c.close()
        else:
            time.sleep(0.001)  # let the server answer, then vanish without reading it
            rst_close(c)


VANISH_STARTS = {
    "echo": ([b"", b"x", b"y" * 100000], echo_ok),
    "http": ([b"", b"GET / HT", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"],
             lambda s: http_get(s)[0] == 200),
    "menu": ([b"", b"10", b"1000\n", b"1004\n"], menu_ok),
    "upload": ([b"", b"put|v", b"put|vanish.bin|100\n", b"put|vanish2.bin|100\n" + b"z" * 50], None),
}


@pytest.mark.parametrize("kind", list(VANISH_STARTS))
def test_peers_that_connect_and_vanish(kind, tmp_path):
    """Hundreds of peers that connect and vanish at every stage of a request
    (before a byte, mid-request, after it, without reading the answer; by FIN
    or RST): the server keeps serving, holds no descriptor for them and
    leaves no temporary file."""
    starts, probe = VANISH_STARTS[kind]
    extra = ["--dir", str(tmp_path), "--write-mode", "thread"] if kind == "upload" else []
    with Server(kind, *extra) as srv:
        if probe is None:
            probe = lambda s: upload(s, b"probe-%d.bin" % random.getrandbits(64), b"data").startswith(b"ok ")  # noqa: E731
        assert probe(srv)
        base = srv.fds()
        _vanishers(srv, starts, 240)
        assert_healthy(srv, probe, fds=base)
        srv.assert_clean_log()
        if kind == "upload":
            assert wait_for(lambda: not [n for n in os.listdir(tmp_path) if n.endswith(".part")])
            assert not (tmp_path / "vanish.bin").exists() and not (tmp_path / "vanish2.bin").exists()


NEVER_READS = {
    # kind: (request bytes repeated, extra server args)
    "echo": (b"e" * 65536, []),
    "menu": (b"1000\n" * 4000, []),
    "http": (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 1000, []),
    "http-file": (b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 100, ["--dir"]),
}


@pytest.mark.parametrize("kind", list(NEVER_READS))
def test_peer_that_never_reads_keeps_memory_bounded(kind, tmp_path):
    """A client that sends requests as fast as the server takes them and never
    reads an answer: the server must stop reading it (flow control) instead of
    buffering answers without bound.  Its RSS may grow by about a read's worth
    of answers, not by what the client sent."""
    request, extra = NEVER_READS[kind]
    if extra == ["--dir"]:
        (tmp_path / "f.bin").write_bytes(os.urandom(1 * MIB))
        extra = ["--dir", str(tmp_path)]
    with Server(kind.split("-")[0], *extra) as srv:
        with connect(srv) as warm:  # allocator warm-up: one ordinary exchange
            warm.sendall(request[:64])
            time.sleep(0.1)
        base_rss = srv.rss()
        base_fds = srv.fds()
        c = connect(srv)
        try:
            sent = fill_without_reading(c, request, seconds=1.5, max_bytes=256 * MIB)
            time.sleep(0.2)
            grown = srv.rss() - base_rss
        finally:
            rst_close(c)
        report(f"never-reads {kind}", sent_mib=round(sent / MIB, 1), rss_growth_mib=round(grown / MIB, 1))
        assert grown < 24 * MIB, f"RSS grew {grown / MIB:.0f} MiB while the client sent {sent / MIB:.0f} MiB"
        assert sent < 128 * MIB, f"the server kept reading: {sent / MIB:.0f} MiB accepted"
        probe = {"echo": echo_ok, "menu": menu_ok}.get(kind, lambda s: http_get(s)[0] == 200)
        assert_healthy(srv, probe, fds=base_fds)
        srv.assert_clean_log()


def _trickle(sock: socket.socket, data: bytes, gap: float = 0.0005) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        time.sleep(gap)


@pytest.mark.parametrize("mode", mode_params(FAULT_MODES))
def test_peer_that_sends_one_byte_at_a_time_echo(mode):
    with Server("echo", mode=mode) as srv:
        base = srv.fds()
        payload = bytes(range(256)) * 2
        with connect(srv) as c:
            got = send_while_reading(c, payload, lambda data: _trickle(c, data))
        assert got == payload
        assert_healthy(srv, echo_ok, fds=base)


def test_peer_that_sends_one_byte_at_a_time_every_kind(tmp_path):
    """HTTP (a POST with a body, then a keep-alive GET), menu lines and an
    upload (header and body), each trickled a byte per segment."""
    with Server("http") as srv:
        with connect(srv) as c:
            _trickle(c, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = recv_until_closed(c)
        assert data.startswith(b"HTTP/1.1 405 ") and data.count(b"HTTP/1.1 ") == 2
        assert b"HTTP/1.1 200 " in data and data.endswith(b"Hello, World")
        srv.assert_clean_log()
    with Server("menu") as srv:
        with connect(srv) as c:
            recv_line(c)
            _trickle(c, b"1000\r\n  1001  \nexit\n")
            lines = recv_until_closed(c).decode().splitlines()
        assert len(lines) == 2 and "余额" in lines[0] and "流量" in lines[1]
    with Server("upload", "--dir", str(tmp_path)) as srv:
        data = os.urandom(300)
        with connect(srv) as c:
            _trickle(c, b"put|trickle.bin|300\n")
            assert recv_line(c) == b"ready\n"
            _trickle(c, data, gap=0.0002)
            assert recv_line(c) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
        assert (tmp_path / "trickle.bin").read_bytes() == data
        srv.assert_clean_log()


# -- 2. running out of file descriptors ---------------------------------------------------

NOFILE = 64  # the server's RLIMIT_NOFILE in these tests: its own fds plus ~50 connections


def _lower_nofile(limit: int = NOFILE) -> Any:
    def preexec() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return preexec


EMFILE_REPORT = r"accept\(\) failed: Too many open files; pausing accepting"


@pytest.mark.parametrize("mode", mode_params(FAULT_MODES))
def test_fd_exhaustion_pauses_without_spinning_and_recovers(mode):
    """RLIMIT_NOFILE lowered in the server, three times more clients than it
    has descriptors.  While accept() fails with EMFILE the server neither
    spins (its CPU time over the episode stays near zero) nor dies; the
    clients it could not accept wait in the backlog and are all served, in
    turn, as others leave; afterwards it is back to its baseline."""
    n_clients = 3 * NOFILE
    with Server("echo", mode=mode, preexec_fn=_lower_nofile()) as srv, many_sockets(n_clients) as clients:
        assert echo_ok(srv)
        base = srv.fds()
        for i in range(n_clients):
            clients.append(connect(srv))  # the kernel completes the handshake: the backlog holds them
        for i, c in enumerate(clients):
            c.sendall(b"%05d" % i)
        time.sleep(0.5)  # the server accepts what it can and runs out
        assert srv.fds() >= NOFILE - 2, f"the server did not run out of descriptors ({srv.fds()})"
        cpu0 = time.monotonic(), srv.cpu()
        time.sleep(2.0)
        episode = srv.cpu() - cpu0[1]
        seconds = time.monotonic() - cpu0[0]
        assert srv.alive(), srv.stderr()[-3000:]
        report(f"EMFILE episode {mode.id}", cpu_s=round(episode, 3), over_s=round(seconds, 2),
               server_fds=srv.fds(), limit=NOFILE, clients=n_clients)
        assert episode < 0.1 * seconds, f"{episode:.2f} CPU seconds in {seconds:.1f}s out of descriptors: spinning"
        # clients leave in turn; each leaving one lets a waiting one in
        pending = list(enumerate(clients))
        deadline = time.monotonic() + 30
        served = 0
        while pending and time.monotonic() < deadline:
            still = []
            for i, c in pending:
                c.setblocking(False)
                try:
                    got = c.recv(16)
                except BlockingIOError:
                    still.append((i, c))
                    continue
                finally:
                    c.setblocking(True)
                assert got == b"%05d" % i, (i, got)
                c.close()
                served += 1
            pending = still
            time.sleep(0.02)
        assert not pending, f"{len(pending)} of {n_clients} clients never served"
        assert served == n_clients
        assert_healthy(srv, echo_ok, fds=base)
        srv.assert_clean_log(allow=[EMFILE_REPORT])
        assert re.search(EMFILE_REPORT, srv.stderr()), "the episode was not reported"


def test_fd_exhaustion_in_http_and_upload_is_an_error_not_a_lie(tmp_path):
    """Descriptors run out while a request needs one (a static file to open,
    an upload's temporary file): the client gets an error it can retry -- a
    5xx, ``error ...`` -- never a 404 for a file that exists, and the server
    serves normally once descriptors are back."""
    (tmp_path / "www").mkdir()
    body = os.urandom(200000)  # above --inline-max: opened per request, sent with sendfile
    (tmp_path / "www" / "f.bin").write_bytes(body)
    (tmp_path / "up").mkdir()
    with Server("http", "--dir", str(tmp_path / "www"), preexec_fn=_lower_nofile()) as srv, \
            many_sockets(NOFILE) as held:
        base = srv.fds()
        with connect(srv) as probe:
            for _ in range(NOFILE):  # fill the table with idle keep-alive connections
                held.append(connect(srv))
            time.sleep(0.5)
            assert srv.fds() >= NOFILE - 1
            probe.sendall(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = recv_until_closed(probe)
        status = int(data.split(b" ", 2)[1])
        report("EMFILE static file", status=status)
        assert status == 503 or (status == 200 and data.endswith(body)), data[:200]
        for c in held:
            c.close()
        held.clear()
        srv.wait_fds(base)
        assert http_get(srv, "/f.bin") == (200, body)
        srv.assert_clean_log(allow=[EMFILE_REPORT])
    with Server("upload", "--dir", str(tmp_path / "up"), preexec_fn=_lower_nofile()) as srv, \
            many_sockets(NOFILE) as held:
        base = srv.fds()
        with connect(srv) as probe:
            for _ in range(NOFILE):
                held.append(connect(srv))
            time.sleep(0.5)
            probe.sendall(b"put|nofd.bin|5\n")
            reply = recv_line(probe)
            if reply == b"ready\n":  # it got a descriptor after all
                probe.sendall(b"12345")
                reply = recv_line(probe)
                assert reply.startswith(b"ok ") or reply.startswith(b"error "), reply
            else:
                assert reply.startswith(b"error write-failed ") and b"EMFILE" in reply, reply
        for c in held:
            c.close()
        held.clear()
        srv.wait_fds(base)
        assert upload(srv, b"after.bin", b"after").startswith(b"ok ")
        assert (tmp_path / "up" / "after.bin").read_bytes() == b"after"
        assert not [n for n in os.listdir(tmp_path / "up") if n.endswith(".part")]
        srv.assert_clean_log(allow=[EMFILE_REPORT])


# -- 3. disk trouble during uploads ---------------------------------------------------------


def _limit_fsize(limit: int) -> Any:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


@pytest.mark.parametrize("write_mode", ["inline", "thread"])
def test_efbig_fails_one_upload_and_spares_the_others(tmp_path, write_mode):
    """RLIMIT_FSIZE (EFBIG, as a full disk's ENOSPC): of three concurrent
    uploads the one over the limit gets ``error no-space``, the two under it
    complete intact; a legacy client (no newline, never reads a status) over
    the limit is disconnected; nothing partial remains and the server keeps
    serving.  (tests/servers covers the single-upload reply.)"""
    limit = 512 * 1024
    with Server("upload", "--dir", str(tmp_path), "--write-mode", write_mode, "--header-quiet", "0.2",
                    preexec_fn=_limit_fsize(limit)) as srv:
        small = [os.urandom(limit - 1), os.urandom(1000)]
        big = os.urandom(4 * limit)
        conns = [connect(srv) for _ in range(3)]
        try:
            for c, (name, data) in zip(conns, [(b"s0.bin", small[0]), (b"big.bin", big), (b"s1.bin", small[1])]):
                c.sendall(b"put|%s|%d\n" % (name, len(data)))
                assert recv_line(c) == b"ready\n"
            senders = [threading.Thread(target=_send_quietly, args=(c, d)) for c, d in zip(conns, [small[0], big, small[1]])]
            for t in senders:
                t.start()
            replies = [recv_line(c) for c in conns]
            for t in senders:
                t.join(TIMEOUT)
        finally:
            for c in conns:
                c.close()
        assert replies[0] == b"ok %s\n" % hashlib.sha256(small[0]).hexdigest().encode()
        assert replies[2] == b"ok %s\n" % hashlib.sha256(small[1]).hexdigest().encode()
        assert replies[1].startswith(b"error no-space ") and b"EFBIG" in replies[1], replies[1]
        with connect(srv) as legacy:
            legacy.sendall(b"legacy-big.bin|%d" % len(big))
            assert recv_line(legacy) == b"ready\n"
            _send_quietly(legacy, big)
            rest = recv_until_closed(legacy)  # the server closes it
            assert rest.startswith(b"error no-space "), rest
        assert wait_for(lambda: sorted(os.listdir(tmp_path)) == ["s0.bin", "s1.bin"]), os.listdir(tmp_path)
        assert (tmp_path / "s0.bin").read_bytes() == small[0]
        assert upload(srv, b"after.bin", b"x" * 1000).startswith(b"ok ")
        srv.assert_clean_log()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server gave up on us (error, then close): expected for the big one
        pass


def _tmpfs_prefix(mountpoint: Path, options: str) -> List[str]:
    """argv prefix running the server in its own user+mount namespace over a small tmpfs."""
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"', str(mountpoint)]


@pytest.fixture(scope="module")
def tmpfs_ok(tmp_path_factory) -> bool:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot make a small filesystem without privileges")
    d = tmp_path_factory.mktemp("probe-tmpfs")
    proc = subprocess.run(_tmpfs_prefix(d, "size=64k") + ["true"], capture_output=True, timeout=20)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {proc.stderr.decode(errors='replace')[:200]}")
    return True


def _inside(srv: Server, path: Path) -> Path:
    """``path`` as the server's mount namespace sees it (its tmpfs is mounted there only)."""
    return Path(f"/proc/{srv.pid}/root{path}")


@pytest.mark.parametrize("write_mode", ["inline", "thread"])
def test_full_filesystem_enospc(tmp_path, tmpfs_ok, write_mode):
    """A real full disk: the upload directory is a 1 MiB tmpfs.  An upload
    larger than the free space is refused up front; two that each fit but not
    together race for the space, and the one that meets ENOSPC gets ``error
    no-space ... ENOSPC`` while its temporary file goes (the space comes
    back); with the inodes used up, creating the temporary file fails the
    same way; when an operator frees space, uploads work again."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Server("upload", "--dir", str(mnt), "--write-mode", write_mode, "--no-fsync",
                    prefix=_tmpfs_prefix(mnt, "size=1m,nr_inodes=8")) as srv:
        inside = _inside(srv, mnt)
        st = os.statvfs(inside)
        assert st.f_blocks * st.f_frsize <= 1 * MIB, "not the small tmpfs"
        reply = upload(srv, b"too-big.bin", os.urandom(2 * MIB))
        assert reply.startswith(b"error no-space "), reply
        datas = [os.urandom(700 * 1024), os.urandom(700 * 1024)]
        conns = [connect(srv) for _ in datas]
        try:
            for i, c in enumerate(conns):
                c.sendall(b"put|race-%d.bin|%d\n" % (i, len(datas[i])))
                assert recv_line(c) == b"ready\n"
            senders = [threading.Thread(target=_send_quietly, args=(c, d)) for c, d in zip(conns, datas)]
            for t in senders:
                t.start()
            replies = [recv_line(c) for c in conns]
            for t in senders:
                t.join(TIMEOUT)
        finally:
            for c in conns:
                c.close()
        failed = [r for r in replies if not r.startswith(b"ok ")]
        assert failed and all(r.startswith(b"error no-space ") and b"ENOSPC" in r for r in failed), replies
        for i, r in enumerate(replies):
            if r.startswith(b"ok "):
                assert (inside / f"race-{i}.bin").read_bytes() == datas[i]
        assert wait_for(lambda: not [n for n in os.listdir(inside) if not n.startswith("race-")]), os.listdir(inside)
        for name in os.listdir(inside):
            os.unlink(inside / name)
        st = os.statvfs(inside)
        assert st.f_bfree == st.f_blocks, "a failed upload's blocks were not released"
        data = os.urandom(600 * 1024)
        assert upload(srv, b"fits.bin", data) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
        assert (inside / "fits.bin").read_bytes() == data
        # inodes: fill them with small files until creating one fails
        replies = [upload(srv, b"small-%d.bin" % i, b"s") for i in range(10)]
        failed = [r for r in replies if not r.startswith(b"ok ")]
        assert failed and all(r.startswith(b"error no-space ") and b"ENOSPC" in r for r in failed), replies
        assert not [n for n in os.listdir(inside) if n.endswith(".part")]
        for name in os.listdir(inside):  # an operator frees space: uploads work again
            os.unlink(inside / name)
        assert upload(srv, b"again.bin", data).startswith(b"ok ")
        assert srv.alive()
        srv.assert_clean_log()


# -- 4. signals -------------------------------------------------------------------------------


@pytest.mark.parametrize("write_mode", ["inline", "thread"])
def test_sigterm_during_uploads_drains_every_stage(tmp_path, write_mode):
    """SIGTERM with uploads at every stage: a connection that has sent nothing
    is closed; a half-sent header is refused with ``error shutdown``; an
    upload mid-body and one whose body is complete both finish and commit;
    nothing partial is left and the server exits 0.  Nothing ends silently:
    every client either gets its ``ok`` or an ``error`` line, or had sent no
    request at all."""
    with Server("upload", "--dir", str(tmp_path), "--write-mode", write_mode, "--grace", "15") as srv:
        idle = connect(srv)
        half = connect(srv)
        half.sendall(b"put|half-hea")
        mid = connect(srv)
        mid_data = os.urandom(3 * MIB)
        mid.sendall(b"put|mid.bin|%d\n" % len(mid_data))
        assert recv_line(mid) == b"ready\n"
        mid.sendall(mid_data[:MIB])
        done = connect(srv)
        done_data = os.urandom(2 * MIB)
        done.sendall(b"put|done.bin|%d\n" % len(done_data))
        assert recv_line(done) == b"ready\n"
        done.sendall(done_data)
        second = connect(srv)  # a second upload on a connection after a first completed
        second.sendall(b"put|first.bin|3\nabc")
        assert recv_line(second) == b"ready\n" and recv_line(second).startswith(b"ok ")
        second.sendall(b"put|second.bin|4\n")
        assert recv_line(second) == b"ready\n"
        time.sleep(0.2)
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert recv_until_closed(idle) == b""
        assert recv_line(half).startswith(b"error shutdown "), "a half-sent header ended silently"
        assert recv_line(done) == b"ok %s\n" % hashlib.sha256(done_data).hexdigest().encode()
        mid.sendall(mid_data[MIB:])
        second.sendall(b"defg")
        assert recv_line(mid) == b"ok %s\n" % hashlib.sha256(mid_data).hexdigest().encode()
        assert recv_line(second) == b"ok %s\n" % hashlib.sha256(b"defg").hexdigest().encode()
        for c in (idle, half, mid, done, second):
            assert recv_until_closed(c) == b""
            c.close()
        assert srv.proc.wait(20) == 0
        srv.assert_clean_log()
    assert sorted(os.listdir(tmp_path)) == ["done.bin", "first.bin", "mid.bin", "second.bin"]
    assert (tmp_path / "mid.bin").read_bytes() == mid_data
    assert (tmp_path / "done.bin").read_bytes() == done_data


def _http_keepalive_client(srv: Server, body: bytes, stats: Counter, stop: threading.Event,
                           problems: List[str]) -> None:
    """GET /f.bin and GET /small.txt in a keep-alive loop until the server closes; every
    response that starts must be complete and correct."""
    import http.client

    expect = {"/f.bin": body, "/small.txt": b"small\n"}
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=TIMEOUT)
            conn.connect()
        except OSError:
            return  # the listener is closed: the server is going away
        try:
            while not stop.is_set():
                target = random.choice(list(expect))
                try:
                    conn.request("GET", target)
                except OSError:
                    stats.add("closed-between")
                    break
                try:
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    stats.add("closed-before-response")  # nothing started: a client retries
                    break
                try:
                    data = resp.read()
                except http.client.IncompleteRead as exc:
                    problems.append(f"truncated {target}: {len(exc.partial)} of {exc.expected} more")
                    break
                if resp.status != 200 or data != expect[target]:
                    problems.append(f"bad response to {target}: {resp.status} {len(data)} bytes")
                    break
                stats.add("ok")
                if resp.will_close:
                    stats.add("closed-with-last-response")
                    break
        finally:
            conn.close()


def test_sigterm_during_keepalive_http_traffic(tmp_path):
    """SIGTERM while eight keep-alive clients hammer the server with large
    (sendfile) and small (inline) file requests: responses in progress complete, connections then close
    (between responses, or after one marked ``Connection: close``), nothing
    is truncated, and the server exits 0 well within its grace period."""
    body = os.urandom(256 * 1024)
    (tmp_path / "f.bin").write_bytes(body)
    (tmp_path / "small.txt").write_bytes(b"small\n")
    with Server("http", "--dir", str(tmp_path), "--grace", "10") as srv:
        stats, stop, problems = Counter(), threading.Event(), []
        clients = [threading.Thread(target=_http_keepalive_client, args=(srv, body, stats, stop, problems))
                   for _ in range(8)]
        for t in clients:
            t.start()
        try:
            assert wait_for(lambda: stats["ok"] > 200, timeout=20), "no traffic"
            srv.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            code = srv.proc.wait(20)
            took = time.monotonic() - t0
        finally:
            stop.set()
            for t in clients:
                t.join(TIMEOUT)
        assert not problems, problems[:5]
        assert code == 0, srv.stderr()[-3000:]
        assert took < 5, f"{took:.1f}s to drain keep-alive connections"
        report("SIGTERM keep-alive", **stats.values)
        srv.assert_clean_log()


def _socket_transport(sock: socket.socket) -> FakeTransport:
    """A fake transport over a real socket (HttpProtocol asks it for FIONREAD)."""
    t = FakeTransport()
    t.extra["socket"] = sock
    return t


def test_graceful_shutdown_answers_a_request_waiting_unread_in_the_socket():
    """The keep-alive race at SIGTERM, made deterministic: the client's next
    request is already in the server's receive queue, not read yet, when the
    shutdown reaches its idle-looking connection.  It must be answered (with
    ``Connection: close``), not dropped by closing at once."""
    from fastmux.http import HttpServer

    a, b = socket.socketpair()
    with a, b:
        proto = HttpServer(None)()
        t = _socket_transport(a)
        proto.connection_made(t)
        proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert t.out.startswith(b"HTTP/1.1 200 ") and not t.eof_written
        t.out.clear()
        b.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # arrived, unread
        proto.shutdown()
        assert not t.eof_written and not t.closed, "closed with a request waiting unread"
        proto.data_received(a.recv(4096))  # the loop reads it next
        assert t.out.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in t.out
        assert t.eof_written or t.closed
        proto.connection_lost(None)
        # an idle connection with nothing pending still closes at once
        proto2 = HttpServer(None)()
        t2 = _socket_transport(a)
        proto2.connection_made(t2)
        proto2.shutdown()
        assert t2.eof_written or t2.closed
        proto2.connection_lost(None)


def test_kill_9_of_a_worker_under_traffic(tmp_path):
    """``--workers 2`` under continuous connect/echo/close traffic: SIGKILL one
    worker.  The parent restarts it, the port keeps answering (failures only
    for connections the dead worker held, no gap of a second), and the new
    worker takes its share of connections."""
    with Server("echo", "--workers", "2") as srv:
        workers = wait_for(lambda: (lambda k: k if len(k) == 2 else None)(children(srv.pid)))
        assert workers
        stats, stop = Counter(), threading.Event()
        times: List[float] = []

        def traffic() -> None:
            while not stop.is_set():
                try:
                    with connect(srv, timeout=2.0) as c:
                        c.sendall(b"ping")
                        if recv_exactly(c, 4) == b"ping":
                            stats.add("ok")
                            times.append(time.monotonic())
                        else:
                            stats.add("failed")
                except OSError:
                    stats.add("failed")

        threads = [threading.Thread(target=traffic) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: stats["ok"] > 100)
            victim = min(workers)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            replaced = wait_for(lambda: (lambda k: k if len(k) == 2 and victim not in k else None)(
                children(srv.pid)))
            assert replaced, f"no replacement worker: {children(srv.pid)}\n{srv.stderr()[-3000:]}"
            ok_at_kill = stats["ok"]
            assert wait_for(lambda: stats["ok"] > ok_at_kill + 300, timeout=20)
        finally:
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
        after = [t for t in times if t > killed_at - 0.5]
        gaps = [b - a for a, b in zip(after, after[1:])]
        report("kill -9 worker", ok=stats["ok"], failed=stats["failed"], max_gap_ms=round(max(gaps) * 1000, 1))
        assert max(gaps) < 1.0, f"the port did not answer for {max(gaps):.2f}s"
        assert stats["failed"] <= 4, f"{stats['failed']} failed exchanges"
        new = (replaced - workers).pop()
        conns = [connect(srv) for _ in range(40)]
        try:
            for c in conns:
                c.sendall(b"x")
                assert recv_exactly(c, 1) == b"x"
            holders = {pid for pid in replaced
                       for fd in os.listdir(f"/proc/{pid}/fd")
                       if _link(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
            assert new in holders
        finally:
            for c in conns:
                c.close()
        assert srv.stop() == 0
        srv.assert_clean_log(allow=[r"exited \(killed by SIGKILL\)"])


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


# -- 5. threads, fork and fd lifecycle traps (in-process reactors) ----------------------------------


def _loop_twins() -> List[Tuple[str, str]]:
    """(reactor module, selectors module) pairs: the compiled twin on the compiled
    core and the pure-Python loop on the pure-Python core."""
    twins = []
    if COMPILED:
        try:
            importlib.import_module("fastmux.reactor._loop_c")
            twins.append(("fastmux.reactor._loop_c", "fastmux._selectors_c"))
        except ImportError:
            twins.append(("fastmux.reactor.loop", "fastmux._selectors_c"))
    twins.append(("fastmux.reactor.loop", "fastmux._selectors_py"))
    return twins


_SEL = {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}
_LOOP_MODES = [("epoll", False), ("epoll", True), ("poll", False), ("select", False)]
LOOP_PARAMS = [
    pytest.param((mods, backend, edge),
                 id=f"{'c' if mods[1].endswith('_c') else 'py'}-{backend}{'-edge' if edge else ''}")
    for mods in _loop_twins() for backend, edge in _LOOP_MODES
]


@pytest.fixture(params=LOOP_PARAMS)
def loop(request) -> Any:
    """A reactor on every implementation x backend x trigger mode; what reaches
    its exception handler is in ``loop.errors``."""
    mods, backend, edge = request.param
    reactor_cls = importlib.import_module(mods[0]).Reactor
    sel = getattr(importlib.import_module(mods[1]), _SEL[backend])()
    reactor = reactor_cls(backend, edge=edge, selector=sel)
    reactor.errors = []
    reactor.set_exception_handler(lambda lp, ctx: lp.errors.append(ctx))
    yield reactor
    if not reactor.is_closed():
        reactor.close()


class _Echo:
    """A stream protocol that echoes and records (duck-typed, as the reactor allows)."""

    def __init__(self, record: Optional[list] = None) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.lost: Any = None
        if record is not None:
            record.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Any) -> None:
        self.lost = exc if exc is not None else "clean"

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


def _spin_check(loop: Any, seconds: float = 0.4) -> Tuple[int, float]:
    """Iterations and CPU seconds of ``loop`` over ``seconds`` with nothing to do."""
    it0, cpu0 = loop.statistics()["iterations"], time.process_time()
    loop.run_until(loop.time() + seconds)
    return loop.statistics()["iterations"] - it0, time.process_time() - cpu0


def test_call_soon_threadsafe_hammered_from_8_threads_while_serving(loop):
    """Eight threads hammer call_soon_threadsafe while the loop serves echo
    traffic: every callback runs exactly once, in order per thread, every
    echo is intact, and afterwards a lone call from a thread still wakes the
    idle loop at once (a lost wake-up would leave it blocked)."""
    server = loop.create_server(_Echo, "127.0.0.1", 0)
    n_threads, per_thread = 8, 1500
    seen: List[Tuple[int, int]] = []
    finished: List[int] = []
    echo_errors: List[str] = []
    rounds = Counter()
    barrier = threading.Barrier(n_threads + 1)

    def hammer(t: int) -> None:
        barrier.wait(TIMEOUT)
        rng = random.Random(t)
        for i in range(per_thread):
            loop.call_soon_threadsafe(seen.append, (t, i))
            if rng.random() < 0.01:
                time.sleep(rng.random() * 0.002)  # let the loop go idle now and then
        loop.call_soon_threadsafe(finished.append, t)

    def traffic() -> None:
        barrier.wait(TIMEOUT)
        rng = random.Random(99)
        try:
            with connect(("127.0.0.1", server.port)) as c:
                for _ in range(150):
                    payload = rng.randbytes(rng.randrange(1, 65536))
                    c.sendall(payload)
                    if recv_exactly(c, len(payload)) != payload:
                        echo_errors.append("echo mismatch")
                        return
                    rounds.add("echo")
        except OSError as exc:
            echo_errors.append(repr(exc))
        finally:
            loop.call_soon_threadsafe(finished.append, "traffic")

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(n_threads)]
    threads.append(threading.Thread(target=traffic))
    for t in threads:
        t.start()
    try:
        assert loop.run_until(lambda: len(finished) == n_threads + 1, timeout=60), (len(seen), finished)
    finally:
        for t in threads:
            t.join(TIMEOUT)
    assert not echo_errors and rounds["echo"] == 150, echo_errors
    assert len(seen) == n_threads * per_thread, f"{len(seen)} callbacks ran, {n_threads * per_thread} scheduled"
    assert len(set(seen)) == len(seen), "a callback ran twice"
    for t in range(n_threads):
        assert [i for (tt, i) in seen if tt == t] == list(range(per_thread)), f"thread {t}: order broken"
    # the loop is idle (no timers): each lone call must wake it now, not at the timeout
    for _ in range(10):
        ev = threading.Event()
        waker = threading.Timer(0.01, loop.call_soon_threadsafe, args=(ev.set,))
        t0 = time.monotonic()
        waker.start()
        try:
            assert loop.run_until(ev.is_set, timeout=30)
        finally:
            waker.join(TIMEOUT)
        took = time.monotonic() - t0
        assert took < 1.0, f"a call_soon_threadsafe took {took:.2f}s to wake the idle loop: lost wake-up"
    server.close()
    assert not loop.errors, loop.errors


def test_no_lost_wakeup_when_a_thread_calls_during_the_drain(loop):
    """The exact interleaving behind a lost wake-up: another thread calls
    call_soon_threadsafe while the loop is draining its wake-up fd (the
    drain releases the GIL).  Simulated deterministically by calling it from
    inside the drain, before the read.  The loop must still be woken by the
    next call from a thread."""
    waker = loop._waker  # internal: the loop's Waker (eventfd or socketpair)
    real_drain = waker.drain
    injected = []
    drains = []

    def drain_with_a_racing_call() -> None:
        if not drains:  # the first drain (the callbacks may already have run)
            loop.call_soon_threadsafe(injected.append, "raced")
        drains.append(1)
        real_drain()

    waker.drain = drain_with_a_racing_call
    try:
        loop.call_soon_threadsafe(injected.append, "first")
        assert loop.run_until(lambda: "raced" in injected, timeout=5)
    finally:
        waker.drain = real_drain
    ev = threading.Event()
    t = threading.Timer(0.01, loop.call_soon_threadsafe, args=(ev.set,))
    t0 = time.monotonic()
    t.start()
    try:
        assert loop.run_until(ev.is_set, timeout=20)
    finally:
        t.join(TIMEOUT)
    assert time.monotonic() - t0 < 1.0, "the loop was not woken: the wake-up flag is stuck"


def _single_threaded() -> None:
    if threading.active_count() != 1:
        pytest.skip("fork() needs a single-threaded process")


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


@pytest.mark.parametrize("child_closes_inherited", [False, True], ids=["child-leaves-it", "child-closes-it"])
def test_fork_child_builds_its_own_reactor_parent_untouched(loop, tmp_path, child_closes_inherited):
    """After fork() the child builds its own reactor and serves on it; whether it
    leaves the inherited reactor alone or closes it, the parent's
    registrations -- a TCP server and its connection, a Unix server, an
    add_reader pipe, a timer -- all still work."""
    _single_threaded()
    protos: List[_Echo] = []
    server = loop.create_server(lambda: _Echo(protos), "127.0.0.1", 0)
    unix_path = str(tmp_path / "parent.sock")
    userver = loop.create_unix_server(lambda: _Echo(protos), unix_path)
    c1 = connect(("127.0.0.1", server.port))
    c1.sendall(b"one")
    assert loop.run_until(lambda: protos and protos[0].data == b"one", timeout=TIMEOUT)
    assert recv_exactly(c1, 3) == b"one"
    r, w = os.pipe()
    piped: List[bytes] = []
    loop.add_reader(r, lambda: piped.append(os.read(r, 100)))
    fired: List[int] = []
    loop.call_later(0.3, fired.append, 1)
    mods = (type(loop).__module__, type(loop._watch.selector).__module__)
    backend, edge = loop.backend, loop.edge
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            own = importlib.import_module(mods[0]).Reactor(
                backend, edge=edge, selector=getattr(importlib.import_module(mods[1]), _SEL[backend])())
            mine: List[_Echo] = []
            s2 = own.create_server(lambda: _Echo(mine), "127.0.0.1", 0)
            with connect(("127.0.0.1", s2.port)) as cc:
                cc.sendall(b"child")
                ok = own.run_until(lambda: mine and mine[0].data == b"child", timeout=5)
                ok = ok and recv_exactly(cc, 5) == b"child"
            s2.close()
            own.close()
            if child_closes_inherited:
                loop.close()
            code = 0 if ok else 2
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        assert _wait_child(pid) == 0, "the child's own reactor did not work"
        c1.sendall(b"two")
        assert loop.run_until(lambda: protos[0].data == b"onetwo", timeout=TIMEOUT), "parent lost its connection"
        assert recv_exactly(c1, 3) == b"two"
        with connect(("127.0.0.1", server.port)) as c2:
            c2.sendall(b"new")
            assert loop.run_until(lambda: any(p.data == b"new" for p in protos), timeout=TIMEOUT), \
                "the parent's server no longer accepts"
            assert recv_exactly(c2, 3) == b"new"
        assert os.path.exists(unix_path), "the child removed the parent's Unix socket file"
        with socket.socket(socket.AF_UNIX) as u:
            u.settimeout(TIMEOUT)
            u.connect(unix_path)
            u.sendall(b"unix")
            assert loop.run_until(lambda: any(p.data == b"unix" for p in protos), timeout=TIMEOUT)
            assert recv_exactly(u, 4) == b"unix"
        os.write(w, b"pipe")
        assert loop.run_until(lambda: piped, timeout=TIMEOUT) and piped == [b"pipe"]
        assert loop.run_until(lambda: fired, timeout=TIMEOUT)
        assert not loop.errors, loop.errors
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.close(w)
        c1.close()
        server.close()
        userver.close()


def test_transport_socket_closed_behind_its_back_and_number_reused(loop):
    """User code closes a transport's socket without telling the loop, and the
    number goes to the next accepted connection.  The loop neither raises nor
    spins; the new connection's bytes go to the new protocol only; the old
    protocol gets connection_lost (at once under poll/select, which see the
    closed fd; under epoll when the number is reused) and never a byte."""
    protos: List[_Echo] = []
    server = loop.create_server(lambda: _Echo(protos), "127.0.0.1", 0)
    ca = connect(("127.0.0.1", server.port))
    cb = socket.socket()  # allocated now, so the next free number is the one closed below
    cb.settimeout(TIMEOUT)
    try:
        assert loop.run_until(lambda: protos, timeout=TIMEOUT)
        old = protos[0]
        sock = old.transport.get_extra_info("socket")
        number = sock.fileno()
        sock.close()  # the bug in user code
        ca.sendall(b"into the void")
        iters, cpu = _spin_check(loop)
        assert iters < 100 and cpu < 0.2, f"{iters} iterations, {cpu:.2f}s CPU: spinning"
        if loop.backend != "epoll":
            assert old.lost is not None, "poll/select see the closed fd: the owner must hear of it"
        cb.connect(("127.0.0.1", server.port))
        assert loop.run_until(lambda: len(protos) == 2, timeout=TIMEOUT)
        new = protos[1]
        cb.sendall(b"mine")
        assert loop.run_until(lambda: new.data == b"mine", timeout=TIMEOUT)
        assert recv_exactly(cb, 4) == b"mine"
        assert loop.run_until(lambda: old.lost is not None, timeout=TIMEOUT)
        assert old.data == b"", "the old protocol got bytes after its socket was closed"
        iters, cpu = _spin_check(loop)
        assert iters < 100 and cpu < 0.2, f"{iters} iterations, {cpu:.2f}s CPU: spinning"
    finally:
        ca.close()
        cb.close()
    loop.errors.clear()  # the lost fd is reported (it is a bug in user code)
    server.close()


@pytest.mark.parametrize("reuse", [False, True], ids=["number-free", "number-reused"])
def test_dup_keeps_a_closed_transport_fd_alive(loop, reuse):
    """The user dup()s a transport's fd and closes the original behind the
    loop's back: the file lives on, and epoll keeps reporting it under the
    old number -- which may by now belong to a new connection.  The loop
    must not spin on those events nor hand them to the new owner as data."""
    protos: List[_Echo] = []
    server = loop.create_server(lambda: _Echo(protos), "127.0.0.1", 0)
    ca = connect(("127.0.0.1", server.port))
    cb = socket.socket()
    cb.settimeout(TIMEOUT)
    keep = -1
    try:
        assert loop.run_until(lambda: protos, timeout=TIMEOUT)
        old = protos[0]
        number = old.transport.get_extra_info("socket").fileno()
        keep = os.dup(number)
        os.close(number)  # behind the loop's back; the socket object still says `number`
        if reuse:
            cb.connect(("127.0.0.1", server.port))
            assert loop.run_until(lambda: len(protos) == 2, timeout=TIMEOUT)
        ca.sendall(b"for the old file")  # readable, and nobody will read it: level-triggered forever
        iters, cpu = _spin_check(loop, 0.5)
        assert iters < 150 and cpu < 0.25, f"{iters} iterations, {cpu:.2f}s CPU in 0.5s: spinning"
        if reuse:
            new = protos[1]
            cb.sendall(b"new")
            assert loop.run_until(lambda: new.data == b"new", timeout=TIMEOUT)
            assert recv_exactly(cb, 3) == b"new"
            assert new.lost is None
        assert old.data == b""
    finally:
        if keep >= 0:
            os.close(keep)
        ca.close()
        cb.close()
    loop.errors.clear()
    server.close()


def test_listening_socket_closed_behind_its_back(loop):
    """A server's listening socket closed without Server.close(): no spin, no
    crash; other connections carry on and Server.close() still works."""
    protos: List[_Echo] = []
    server = loop.create_server(lambda: _Echo(protos), "127.0.0.1", 0)
    with connect(("127.0.0.1", server.port)) as c:
        assert loop.run_until(lambda: protos, timeout=TIMEOUT)
        server.sockets[0].close()
        iters, cpu = _spin_check(loop)
        assert iters < 100 and cpu < 0.2, f"{iters} iterations, {cpu:.2f}s CPU: spinning"
        c.sendall(b"still")
        assert loop.run_until(lambda: protos[0].data == b"still", timeout=TIMEOUT)
        assert recv_exactly(c, 5) == b"still"
    server.close()
    loop.errors.clear()
