"""A process's CPU time, resident memory and open files, read from ``/proc`` (Linux).

CPU times in ``/proc/<pid>/stat`` count whole clock ticks (``SC_CLK_TCK``,
100 per second on practically every Linux: 10 ms).  A reading is therefore
exact only to a tick, and a difference of two readings to two ticks: measure
over several seconds of load (the echo benchmark insists on at least 3 s),
and use :func:`tick_error` to say how much the quantisation could matter.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterator, List

__all__ = ["CLOCK_TICK_S", "CpuTimes", "cpu_times", "rss_bytes", "fd_count", "tick_error"]

CLOCK_TICK_S: float = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds spent in user mode and in the kernel."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: "CpuTimes") -> "CpuTimes":
        return CpuTimes(self.user - other.user, self.system - other.system)


def _stat_fields(pid: int) -> List[str]:
    """Fields of /proc/<pid>/stat from field 3 (state) on.

    The command name (field 2) is in parentheses and may itself contain
    spaces and parentheses, so split after the last ')'.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2 :].decode().split()


# Indexes into _stat_fields(): proc(5) numbers fields from 1 and the list
# starts at field 3, so field N is at N - 3.
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 4 - 3, 14 - 3, 15 - 3, 16 - 3, 17 - 3


def _children_by_parent() -> Dict[int, List[int]]:
    # /proc/<pid>/task/<tid>/children would be cheaper but needs
    # CONFIG_PROC_CHILDREN, which not every kernel has; scanning works anywhere.
    tree: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[_PPID])
        except (OSError, ValueError, IndexError):
            continue  # the process exited while we looked
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _descendants(pid: int) -> Iterator[int]:
    tree = _children_by_parent()
    stack = list(tree.get(pid, ()))
    while stack:
        child = stack.pop()
        yield child
        stack.extend(tree.get(child, ()))


def cpu_times(pid: int, children: bool = False) -> CpuTimes:
    """CPU time used so far by ``pid``, with ``children=True`` also by its
    descendants: those still running and those it has already waited for."""
    fields = _stat_fields(pid)
    ticks_user, ticks_sys = int(fields[_UTIME]), int(fields[_STIME])
    if children:
        ticks_user += int(fields[_CUTIME])
        ticks_sys += int(fields[_CSTIME])
        for child in _descendants(pid):
            try:
                sub = _stat_fields(child)
            except OSError:
                continue  # exited since the scan; a waited-for child lands in cutime
            ticks_user += int(sub[_UTIME])
            ticks_sys += int(sub[_STIME])
    return CpuTimes(ticks_user * CLOCK_TICK_S, ticks_sys * CLOCK_TICK_S)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS in /proc/<pid>/status), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise ProcessLookupError(f"process {pid} has no VmRSS (a zombie or a kernel thread)")


def fd_count(pid: int) -> int:
    """How many file descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def tick_error(cpu_seconds: float) -> float:
    """Worst-case relative error of a CPU-time difference of ``cpu_seconds``
    from tick quantisation (each end may be off by up to one tick)."""
    return float("inf") if cpu_seconds <= 0 else 2 * CLOCK_TICK_S / cpu_seconds
