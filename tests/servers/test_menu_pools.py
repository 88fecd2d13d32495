"""The menu's process-pool workers end with their server, however it ends."""
from __future__ import annotations

import signal
import sys
import time

import pytest

from support import procs
from support.net import connect, recv_line
from support.server import Server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_process_pool_workers_die_with_a_killed_server():
    with Server("menu") as srv:
        with connect(srv.address, timeout=60) as c:
            recv_line(c)
            c.sendall(b"1002\n")  # runs in the process pool
            assert recv_line(c).decode().startswith("本月账单")
        children = procs.descendants(srv.proc.pid)
        assert children, "the process pool started no process"
        srv.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 10
        while (left := [pid for pid in children if procs.alive(pid)]) and time.monotonic() < deadline:
            procs.reap_zombie_children()  # the suite is their subreaper once the server is gone
            time.sleep(0.1)
        assert not left, f"outlived the killed server: {[procs.describe(pid) for pid in left]}"
