"""``fastmux serve upload`` end to end: real clients against the CLI server."""
from __future__ import annotations

import hashlib
import os
import stat
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from support.net import connect, recv_line, recv_until_closed
from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd

# The tutorial's FTP upload client, ported to Python 3 and otherwise unchanged
# (its `input = raw_input(...)` typo fixed, end of input ends it): header
# NAME|SIZE with no newline, wait for any ack, 1024-byte sends, no status read.
TUTORIAL_UPLOAD_CLIENT = r'''
import socket
import sys
import os
import stat

ip_port = ('127.0.0.1', int(sys.argv[1]))
sk = socket.socket()
sk.connect(ip_port)

container = {'key': '', 'data': ''}
while True:
    try:
        path = input('path: ')
    except EOFError:
        break
    file_name = os.path.basename(path)
    file_size = os.stat(path).st_size
    sk.send((file_name + '|' + str(file_size)).encode())
    sk.recv(1024)
    send_size = 0
    f = open(path, 'rb')
    Flag = True
    while Flag:
        if send_size + 1024 > file_size:
            data = f.read(file_size - send_size)
            Flag = False
        else:
            data = f.read(1024)
            send_size += 1024
        sk.send(data)
    f.close()
sk.close()
'''


@pytest.fixture(scope="module")
def updir(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def server(updir):
    with Server("upload", "--dir", str(updir), "--max-size", "4M", "--idle-timeout", "1",
                "--header-quiet", "0.2") as srv:
        yield srv


def entries(d) -> set:
    return set(os.listdir(d))


def put(address: str, name: bytes, data: bytes, *, header: bytes = None) -> bytes:
    """One upload with the newline protocol; returns the final status line."""
    with connect(address) as c:
        c.sendall(header if header is not None else b"put|" + name + b"|%d\n" % len(data))
        ack = recv_line(c)
        if ack != b"ready\n":
            return ack
        c.sendall(data)
        return recv_line(c)


def refused(address: str, header: bytes) -> bytes:
    with connect(address) as c:
        c.sendall(header)
        reply = recv_line(c)
        assert recv_until_closed(c) == b""  # and the server closed
    return reply


def wait_gone(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_upload_roundtrip_and_digest(server, updir):
    data = os.urandom(3 << 20) + b"tail"
    status = put(server.address, b"blob.bin", data)
    assert status == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
    assert (updir / "blob.bin").read_bytes() == data


def test_several_uploads_on_one_connection_and_empty_file(server, updir):
    with connect(server.address) as c:
        for name, data in ((b"one.txt", b"1" * 10), (b"empty.txt", b""), (b"three.txt", b"3" * 3000)):
            c.sendall(b"put|" + name + b"|%d\r\n" % len(data))
            assert recv_line(c) == b"ready\n"
            c.sendall(data)
            assert recv_line(c) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
    assert (updir / "empty.txt").read_bytes() == b""
    assert (updir / "three.txt").read_bytes() == b"3" * 3000


def test_two_field_header_with_newline(server, updir):
    assert put(server.address, b"", b"xyz", header=b"twofield.txt|3\n").startswith(b"ok ")
    assert (updir / "twofield.txt").read_bytes() == b"xyz"


@pytest.mark.parametrize("name", [
    b"../escape.txt", b"a/b.txt", b"/etc/passwd", b"..", b".", b"dir\\file.txt",
    b"nul\x00byte", b"x" * 256, b"", b"   ", b"ctl\x01char", b"new\rline",
    b"\xff\xfe.bin", b".fastmux-upload-123-x.part",
])
def test_bad_names_are_refused(server, updir, name):
    before = entries(updir)
    reply = refused(server.address, b"put|" + name + b"|5\n")
    assert reply.startswith(b"error bad-name "), reply
    assert entries(updir) == before
    assert not (updir.parent / "escape.txt").exists()


def test_longest_name_is_accepted(server, updir):
    name = "é" * 127 + "x"  # 255 bytes of UTF-8
    assert len(name.encode()) == 255
    assert put(server.address, name.encode(), b"ok!").startswith(b"ok ")
    assert (updir / name).read_bytes() == b"ok!"


@pytest.mark.parametrize("size, code", [
    (b"-5", b"bad-size"), (b"abc", b"bad-size"), (b"5.0", b"bad-size"), (b"1e3", b"bad-size"),
    (b"", b"bad-size"), (b"+5", b"bad-size"), (b"\xd9\xa5", b"bad-size"),  # Arabic-Indic five
    (b"9" * 40, b"too-large"), (b"99999999999999999", b"too-large"), (b"%d" % ((4 << 20) + 1), b"too-large"),
])
def test_bad_sizes_are_refused(server, updir, size, code):
    before = entries(updir)
    reply = refused(server.address, b"put|size-test.bin|" + size + b"\n")
    assert reply.startswith(b"error " + code + b" "), reply
    assert entries(updir) == before


def test_max_size_limit_is_inclusive(server, updir):
    data = b"m" * (4 << 20)
    assert put(server.address, b"exactly-max.bin", data).startswith(b"ok ")
    assert refused(server.address, b"put|over-max.bin|%d\n" % (len(data) + 1)).startswith(b"error too-large")


@pytest.mark.parametrize("header, code", [
    (b"get|x.txt|5\n", b"bad-command"),
    (b"put|a|b|5\n", b"bad-header"),
    (b"justaname\n", b"bad-header"),
    (b"x" * 2000, b"header-too-long"),
])
def test_bad_headers(server, header, code):
    assert refused(server.address, header).startswith(b"error " + code)


def test_existing_file_is_never_overwritten(server, updir):
    assert put(server.address, b"keep.txt", b"original").startswith(b"ok ")
    reply = refused(server.address, b"put|keep.txt|3\n")
    assert reply.startswith(b"error exists"), reply
    assert (updir / "keep.txt").read_bytes() == b"original"


def test_file_created_during_upload_is_not_replaced(server, updir):
    with connect(server.address) as c:
        c.sendall(b"put|race.txt|6\n")
        assert recv_line(c) == b"ready\n"
        (updir / "race.txt").write_bytes(b"theirs")  # someone else wins the name meanwhile
        c.sendall(b"mine!!")
        assert recv_line(c).startswith(b"error exists")
    assert (updir / "race.txt").read_bytes() == b"theirs"
    assert not [n for n in entries(updir) if n.endswith(".part")]


def test_short_upload_then_eof_leaves_nothing(server, updir):
    before = entries(updir)
    with connect(server.address) as c:
        c.sendall(b"put|short.bin|1000\n")
        assert recv_line(c) == b"ready\n"
        c.sendall(b"x" * 500)
        c.shutdown(socket.SHUT_WR)
        assert recv_line(c).startswith(b"error short ")
    assert wait_gone(lambda: entries(updir) == before), entries(updir) - before


def test_overrun_leaves_nothing(server, updir):
    before = entries(updir)
    with connect(server.address) as c:
        c.sendall(b"put|overrun.bin|10\n")
        assert recv_line(c) == b"ready\n"
        c.sendall(b"y" * 20)
        assert recv_line(c).startswith(b"error overrun ")
    assert wait_gone(lambda: entries(updir) == before), entries(updir) - before


def test_vanishing_client_leaves_nothing(server, updir):
    before = entries(updir)
    c = connect(server.address)
    c.sendall(b"put|vanish.bin|%d\n" % (2 << 20))
    assert recv_line(c) == b"ready\n"
    c.sendall(os.urandom(1 << 20))
    time.sleep(0.1)
    assert any(n.endswith(".part") for n in entries(updir))  # the temporary file exists meanwhile
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
    assert wait_gone(lambda: entries(updir) == before), entries(updir) - before
    assert not (updir / "vanish.bin").exists()


def test_stalled_client_times_out_and_leaves_nothing(server, updir):
    before = entries(updir)
    with connect(server.address) as c:
        c.sendall(b"put|stall.bin|100\n")
        assert recv_line(c) == b"ready\n"
        c.sendall(b"z" * 10)
        assert recv_line(c).startswith(b"error idle ")  # --idle-timeout 1
    assert wait_gone(lambda: entries(updir) == before)


def test_tutorial_legacy_client_unchanged(server, updir, tmp_path):
    client = tmp_path / "tutorial_upload_client.py"
    client.write_text(TUTORIAL_UPLOAD_CLIENT)
    files = []
    for i, size in enumerate((5000, 1024, 0, 70001)):
        f = tmp_path / f"legacy{i}.dat"
        f.write_bytes(os.urandom(size))
        files.append(f)
    paths = "".join(f"{f}\n" for f in files)
    proc = subprocess.run([sys.executable, str(client), str(server.port)], input=paths.encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for f in files:
        assert wait_gone(lambda: (updir / f.name).exists()), f.name
        assert (updir / f.name).read_bytes() == f.read_bytes()


def test_three_field_header_without_newline_is_accepted_after_quiet(server, updir):
    with connect(server.address) as c:
        c.sendall(b"put|quiet3.txt|4")
        assert recv_line(c) == b"ready\n"
        c.sendall(b"abcd")
    assert wait_gone(lambda: (updir / "quiet3.txt").exists())
    assert (updir / "quiet3.txt").read_bytes() == b"abcd"


def test_fastmux_send_verifies_and_has_no_progress_bar_off_tty(server, updir, tmp_path):
    src = tmp_path / "sendme.bin"
    src.write_bytes(os.urandom((1 << 20) + 123))
    proc = subprocess.run(fastmux_cmd("send", str(src), server.address), capture_output=True,
                          timeout=60, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert b"verified" in proc.stdout
    assert b"\r" not in proc.stderr  # no progress bar: stderr is not a terminal
    assert (updir / "sendme.bin").read_bytes() == src.read_bytes()
    # a second send is refused: the name exists
    proc = subprocess.run(fastmux_cmd("send", str(src), server.address), capture_output=True,
                          timeout=60, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 1
    assert b"exists" in proc.stderr


def test_fastmux_send_with_name_and_missing_file(server, updir, tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"named")
    proc = subprocess.run(fastmux_cmd("send", str(src), server.address, "--name", "renamed.bin"),
                          capture_output=True, timeout=60, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert (updir / "renamed.bin").read_bytes() == b"named"
    proc = subprocess.run(fastmux_cmd("send", str(tmp_path / "nope"), server.address),
                          capture_output=True, timeout=60, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 1 and b"nope" in proc.stderr


def test_no_temporary_files_left(server, updir):
    assert wait_gone(lambda: not [n for n in entries(updir) if n.endswith(".part")])


# ---- separate servers ------------------------------------------------------

def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_disk_full_is_reported_not_swallowed(tmp_path, mode):
    # RLIMIT_FSIZE makes writes past 256 KiB fail with EFBIG, as a full disk fails with ENOSPC.
    with Server("upload", "--dir", str(tmp_path), "--write-mode", mode, preexec_fn=_limit_file_size) as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|big.bin|%d\n" % (4 << 20))
            assert recv_line(c) == b"ready\n"
            try:
                c.sendall(b"b" * (4 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass
            reply = recv_line(c)
        assert reply.startswith(b"error no-space ") and b"EFBIG" in reply, reply
        assert wait_gone(lambda: os.listdir(tmp_path) == [])
        assert srv.stop() == 0


def test_thread_write_mode_roundtrip(tmp_path):
    with Server("upload", "--dir", str(tmp_path), "--write-mode", "thread") as srv:
        data = os.urandom(9 << 20)
        assert put(srv.address, b"threaded.bin", data) == b"ok %s\n" % hashlib.sha256(data).hexdigest().encode()
        assert (tmp_path / "threaded.bin").read_bytes() == data
        assert srv.stop() == 0


def test_sigterm_lets_an_upload_in_progress_finish(tmp_path):
    with Server("upload", "--dir", str(tmp_path), "--grace", "10") as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|inflight.bin|2000000\n")
            assert recv_line(c) == b"ready\n"
            c.sendall(b"a" * 1000000)
            time.sleep(0.2)
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(OSError):  # no longer accepting
                connect(srv.address, timeout=2).close()
            c.sendall(b"a" * 1000000)
            assert recv_line(c).startswith(b"ok ")
            assert recv_until_closed(c) == b""
        assert srv.proc.wait(20) == 0
    assert (tmp_path / "inflight.bin").stat().st_size == 2000000


def test_grace_period_over_discards_a_stalled_upload(tmp_path):
    with Server("upload", "--dir", str(tmp_path), "--grace", "0.5") as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|stalled.bin|1000\n")
            assert recv_line(c) == b"ready\n"
            c.sendall(b"s" * 10)
            time.sleep(0.2)
            t0 = time.monotonic()
            assert srv.stop(signal.SIGTERM) == 0
            assert time.monotonic() - t0 < 8
    assert os.listdir(tmp_path) == []


def test_bad_dir_is_reported(tmp_path):
    proc = subprocess.run(fastmux_cmd("serve", "upload", "--port", "0", "--dir", str(tmp_path / "missing"),
                                      "--loop", LOOP),
                          capture_output=True, timeout=30, env=child_env(), cwd=str(ROOT))
    assert proc.returncode != 0
    assert b"not a directory" in proc.stderr


@pytest.mark.parametrize("umask, args, mode", [
    (0o022, (), 0o644),
    (0o027, (), 0o640),
    (0o022, ("--mode", "600"), 0o600),
])
def test_stored_files_get_the_umasks_mode_or_the_one_asked_for(tmp_path, umask, args, mode):
    with Server("upload", "--dir", str(tmp_path), *args, preexec_fn=lambda: os.umask(umask)) as srv:
        assert put(srv.address, b"f.txt", b"data").startswith(b"ok ")
    assert stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode) == mode
