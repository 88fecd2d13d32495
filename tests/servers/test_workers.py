"""``--workers N``: pre-forked workers sharing a port, supervised."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from fastmux.servers._net import parse_target as parse_addr
from support.net import connect, recv_line
from support.procs import alive, children
from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd, wait_for


def test_two_workers_share_the_port_and_restart_after_kill_9():
    with Server("echo", "--workers", "2") as srv:
        workers = wait_for(lambda: children(srv.proc.pid) if len(children(srv.proc.pid)) == 2 else None)
        assert workers and len(workers) == 2
        for _ in range(20):
            with connect(srv.address) as c:
                c.sendall(b"hi\n")
                assert recv_line(c) == b"hi\n"
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(lambda: (lambda kids: kids if len(kids) == 2 and victim not in kids else None)(
            children(srv.proc.pid)))
        assert replaced, f"no replacement worker: {children(srv.proc.pid)}\n{srv.stderr()}"
        assert victim not in replaced
        time.sleep(0.3)  # the new worker binds its listener
        for _ in range(20):
            with connect(srv.address) as c:
                c.sendall(b"again\n")
                assert recv_line(c) == b"again\n"
        assert "restarting" in srv.stderr()
        assert srv.stop() == 0
        assert not any(alive(p) for p in replaced)


def test_both_workers_take_connections():
    with Server("echo", "--workers", "2") as srv:
        workers = wait_for(lambda: children(srv.proc.pid) if len(children(srv.proc.pid)) == 2 else None)
        conns = [connect(srv.address) for _ in range(40)]
        try:
            for c in conns:
                c.sendall(b"p\n")
                assert recv_line(c) == b"p\n"
            holders = set()
            for pid in workers:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    if target.startswith("socket:"):
                        holders.add(pid)
            assert holders == workers
            # SO_REUSEPORT hashes connections over the listeners: with 40
            # connections both workers hold some established sockets.
            counts = {pid: _established(pid) for pid in workers}
            assert all(n > 0 for n in counts.values()), counts
        finally:
            for c in conns:
                c.close()
        assert srv.stop() == 0


def _established(pid: int) -> int:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "01" and parts[9] in inodes:  # 01 = ESTABLISHED
                n += 1
    return n


def test_workers_graceful_shutdown_with_sigint_finishes_in_flight(tmp_path):
    with Server("upload", "--dir", str(tmp_path), "--workers", "2") as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|w.bin|200000\n")
            assert recv_line(c) == b"ready\n"
            c.sendall(b"w" * 100000)
            srv.send_signal(signal.SIGINT)
            time.sleep(0.3)
            c.sendall(b"w" * 100000)
            assert recv_line(c).startswith(b"ok ")
        assert srv.proc.wait(30) == 0
    assert (tmp_path / "w.bin").stat().st_size == 200000


def test_workers_udp_and_unix(tmp_path):
    with Server("udp-echo", "--workers", "2") as srv:
        family, sockaddr = parse_addr(srv.address)
        workers = wait_for(lambda: children(srv.proc.pid) if len(children(srv.proc.pid)) == 2 else None)
        os.kill(sorted(workers)[0], signal.SIGKILL)  # restarted after the parent dropped its reservation
        assert wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid) != workers)
        time.sleep(0.3)
        for i in range(20):  # from fresh source ports: hashed over both workers
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"%d" % i, sockaddr)
                assert s.recvfrom(100)[0] == b"%d" % i
        assert srv.stop() == 0
    path = tmp_path / "w.sock"
    with Server("echo", "--unix", str(path), "--workers", "2") as srv:
        for _ in range(10):
            with connect(srv.address) as c:
                c.sendall(b"u\n")
                assert recv_line(c) == b"u\n"
        # a worker's exit must not remove the shared socket file
        victim = sorted(children(srv.proc.pid))[0]
        os.kill(victim, signal.SIGTERM)
        time.sleep(0.5)
        assert path.exists()
        with connect(srv.address) as c:
            c.sendall(b"v\n")
            assert recv_line(c) == b"v\n"
        assert srv.stop() == 0
    assert not path.exists()


def test_bad_options_fail_before_forking(tmp_path):
    menu = tmp_path / "bad.json"
    menu.write_text("{broken")
    proc = subprocess.run(fastmux_cmd("serve", "menu", "--port", "0", "--workers", "2", "--menu", str(menu),
                                      "--loop", LOOP),
                          capture_output=True, text=True, timeout=60, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 2
    assert "bad.json" in proc.stderr and "supervisor" not in proc.stderr
    assert "listening" not in proc.stdout
