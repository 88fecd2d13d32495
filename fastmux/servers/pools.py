"""Worker pools for work that must not run on the loop: blocking calls go to
a thread pool, CPU-heavy ones to a process pool.  Process-pool workers end
with the server process, however it ends."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

__all__ = ["Pools"]


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_server(server: int) -> None:
    """Process-pool initializer: the worker ends when the server process does,
    however it ends.  A graceful stop shuts the pool down, but after a
    ``kill -9`` a worker would wait on its call queue forever (it holds the
    queue's write end itself, so it never sees EOF)."""
    if sys.platform.startswith("linux"):
        # The signal comes when the *thread* that spawned this worker exits:
        # the pool spawns from the thread that submits, the server's loop
        # thread, which lives as long as the server serves.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    else:
        threading.Thread(target=_watch_server, args=(server,), daemon=True).start()
    if os.getppid() != server:  # it died before prctl() took effect
        os._exit(1)


def _watch_server(server: int) -> None:
    while os.getppid() == server:
        time.sleep(1.0)
    os._exit(1)


class Pools:
    """A thread pool and a process pool, each made (and its module imported)
    on first use: most servers never need the process pool."""

    def __init__(self, threads: Optional[int] = None, processes: Optional[int] = None) -> None:
        self._threads = threads or min(8, (os.cpu_count() or 1) + 2)
        self._processes = processes or (os.cpu_count() or 1)
        self._thread_pool: Optional[ThreadPoolExecutor] = None
        self._process_pool: Optional[ProcessPoolExecutor] = None

    def get(self, kind: str) -> Executor:
        if kind == "thread":
            if self._thread_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._thread_pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fastmux-offload")
            return self._thread_pool
        if kind == "process":
            if self._process_pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # "spawn", not fork: the server is multi-threaded by then
                # (the thread pool), and fork() of a threaded process can
                # deadlock the child.
                self._process_pool = ProcessPoolExecutor(
                    self._processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_server, initargs=(os.getpid(),))
            return self._process_pool
        raise ValueError(f"unknown pool {kind!r}: expected 'thread' or 'process'")

    def close(self, wait: bool = True) -> None:
        for pool in (self._thread_pool, self._process_pool):
            if pool is not None:
                pool.shutdown(wait=wait, cancel_futures=True)
        self._thread_pool = self._process_pool = None
