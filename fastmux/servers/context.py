"""What one server process shares between its connections.

``ServeContext`` bundles the loop (``Runtime``), the live-connection set used
by graceful shutdown, and the worker pools for work that must not run on the
loop: blocking calls go to a thread pool, CPU-heavy ones to a process pool,
and ``offload(...)`` delivers the result back on the loop thread.  The upload
server sends its fsync and rename work to the thread pool; the menu server's
``{"call": ...}`` entries run in either pool (see ``menu.py``); process-pool
workers end with the server process, however it ends.  ``QuietTimer`` is
how the menu and upload servers recognise a message the tutorial's clients
send without a newline: by the silence after it.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, List, Optional

from ._runtime import Runtime
from .shutdown import Connections


QUIET = 0.3  # seconds of silence that end a message sent without a newline


class QuietTimer:
    """Calls ``fire()`` once the peer has sent nothing for ``period`` seconds.

    For the tutorial's clients, which send a message with no terminator and
    wait for the answer: the protocol ``arm()``s the timer while its buffer
    holds an unterminated message and ``cancel()``s it once the message is
    complete.  ``last()`` is when the peer last sent data (the protocol keeps
    that time for its idle timeout anyway), so a read costs the timer
    nothing; it re-arms itself for the rest of the period when it finds that
    data arrived meanwhile.  A negative ``period`` never fires.
    """

    __slots__ = ("_runtime", "_period", "_last", "_fire", "_handle")

    def __init__(self, runtime: Runtime, period: float, last: Callable[[], float],
                 fire: Callable[[], None]) -> None:
        self._runtime = runtime
        self._period = period
        self._last = last
        self._fire = fire
        self._handle: Any = None

    def arm(self) -> None:
        if self._handle is None and self._period >= 0:
            self._handle = self._runtime.call_later(self._period, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        remaining = self._last() + self._period - self._runtime.time()
        if remaining > 0:
            self._handle = self._runtime.call_later(remaining, self._check)
        else:
            self._fire()


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
    """A thread pool and a process pool, each made on first use."""

    def __init__(self, threads: Optional[int] = None, processes: Optional[int] = None) -> None:
        self._threads = threads or min(8, (os.cpu_count() or 1) + 2)
        self._processes = processes or (os.cpu_count() or 1)
        self._thread_pool: Optional[ThreadPoolExecutor] = None
        self._process_pool: Optional[ProcessPoolExecutor] = None

    def get(self, kind: str) -> Executor:
        if kind == "thread":
            if self._thread_pool is None:
                self._thread_pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fastmux-offload")
            return self._thread_pool
        if kind == "process":
            if self._process_pool is None:
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


class ServeContext:
    """Per-process state shared by a server's connections."""

    def __init__(self, runtime: Runtime, conns: Optional[Connections] = None,
                 pools: Optional[Pools] = None) -> None:
        self.runtime = runtime
        self.conns = conns if conns is not None else Connections()
        self.pools = pools if pools is not None else Pools()
        self._closers: List[Callable[[], None]] = []

    def offload(self, pool: str, func: Callable[..., Any], *args: Any,
                done: Callable[[Any], None]) -> None:
        """Run ``func(*args)`` in the ``"thread"`` or ``"process"`` pool;
        ``done(future)`` is called on the loop thread."""
        self.runtime.offload(self.pools.get(pool), func, *args, done=done)

    def at_close(self, func: Callable[[], None]) -> None:
        """Run ``func()`` in ``close()``, after the pools have finished their work."""
        self._closers.append(func)

    def close(self) -> None:
        self.pools.close()
        while self._closers:
            self._closers.pop()()
