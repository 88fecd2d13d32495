"""The processes a test session started, found through ``/proc``.

The pytest process makes itself a child subreaper (``prctl``), so a process
whose parent dies -- the pool workers of a server killed with SIGKILL --
is re-parented to pytest instead of init: every process the session
started, however deep, stays a descendant of pytest, and at the end of the
session none may be left (``tests/conftest.py``).
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Dict, List, Tuple

PR_SET_CHILD_SUBREAPER = 36

# pid -> what left it behind (the test and the server it belonged to)
left_by: Dict[int, str] = {}


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children(pid: int) -> set:
    """The pids of ``pid``'s children (empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except FileNotFoundError:
        return set()


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _table() -> Dict[int, Tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        table[int(name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int) -> List[int]:
    """The live (not zombie) descendants of ``root``, at any depth."""
    table = _table()
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if table[pid][1] != "Z":
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    where = left_by.get(pid)
    return f"pid {pid}: {cmd}" + (f" (left by {where})" if where else "")


def reap_zombie_children() -> None:
    """Collect the exit status of adopted orphans that have ended."""
    for pid, (ppid, state) in _table().items():
        if ppid == os.getpid() and state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_leftovers(grace: float) -> List[str]:
    """Wait up to ``grace`` seconds for this process's descendants to end;
    kill the rest and return what they were."""
    deadline = time.monotonic() + grace
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        reap_zombie_children()
        time.sleep(0.05)
    report = [describe(pid) for pid in left]
    for _ in range(10):  # a killed parent's children come back to us: kill those too
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        reap_zombie_children()
        left = descendants(os.getpid())
        if not left:
            break
    return report
