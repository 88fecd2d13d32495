"""What one server process shares between its connections.

``ServeContext`` bundles the loop (``Runtime``), the live-connection set used
by graceful shutdown, and the worker pools for work that must not run on the
loop: blocking calls go to a thread pool, CPU-heavy ones to a process pool,
and ``offload(...)`` delivers the result back on the loop thread.  The upload
server sends its fsync and rename work to the thread pool; the menu server's
``{"call": ...}`` entries run in either pool (see ``menu.py``).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from ._runtime import Runtime
from .shutdown import Connections

if TYPE_CHECKING:
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor


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
                    self._processes, mp_context=multiprocessing.get_context("spawn"))
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
