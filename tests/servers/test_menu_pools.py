"""The menu's process-pool workers end with their server, however it ends."""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Dict, Tuple

import pytest

from server_helpers import Server, connect, recv_line

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _stat(pid: int) -> Tuple[str, int, str]:
    """(state, ppid, start time) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), fields[19]


def descendants(root: int) -> Dict[int, str]:
    """Every live descendant of ``root``: pid -> start time (a pid alone may be reused)."""
    parents: Dict[int, Tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                state, ppid, start = _stat(int(name))
            except (OSError, IndexError):
                continue
            if state != "Z":
                parents[int(name)] = (ppid, start)
    found: Dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def alive(pid: int, start: str) -> bool:
    try:
        state, _, now_start = _stat(pid)
    except (OSError, IndexError):
        return False
    return state != "Z" and now_start == start


def test_process_pool_workers_die_with_a_killed_server():
    with Server("menu") as srv:
        with connect(srv.address, timeout=60) as c:
            recv_line(c)
            c.sendall(b"1002\n")  # runs in the process pool
            assert recv_line(c).decode().startswith("本月账单")
        children = descendants(srv.proc.pid)
        assert children, "the process pool started no process"
        srv.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = {pid for pid, start in children.items() if alive(pid, start)}
            if not left:
                break
            time.sleep(0.1)
        else:
            cmdlines = {}
            for pid in left:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdlines[pid] = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    pass
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"outlived the killed server: {cmdlines}")
