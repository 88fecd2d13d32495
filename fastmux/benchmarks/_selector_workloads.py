"""Selector workloads shared by ``fastmux bench selectors`` and ``bench/``.

N registered sockets come from N/2 socket pairs with both ends registered
for reading (N = 10 000 needs 10 000 fds, within a 20 000 hard limit that
N full pairs would exceed); K of them are made readable by sending one byte
to their peers.  Every selector under test registers the same sockets.
"""
from __future__ import annotations

import resource
import selectors as stdlib_selectors
import socket
from typing import Callable, Dict, Iterable, List

import fastmux.selectors as fast_selectors

BACKEND_CLASSES = {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}
SELECT_FD_LIMIT = 1024  # FD_SETSIZE: select() cannot watch fds at or above it


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"needs {needed} fds, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def select_cannot_watch(backend: str, socks: Iterable[socket.socket]) -> bool:
    """True when ``backend`` is select() and some socket's fd is past FD_SETSIZE."""
    return backend == "select" and max(s.fileno() for s in socks) >= SELECT_FD_LIMIT


class SocketSet:
    """N registered-to-be sockets, K of them readable."""

    def __init__(self, n: int, k: int) -> None:
        if n % 2 or not 0 < k <= n:
            raise ValueError(f"need an even N and 0 < K <= N, got N={n} K={k}")
        raise_fd_limit(n + 256)
        self.pairs = [socket.socketpair() for _ in range(n // 2)]
        self.socks: List[socket.socket] = [s for pair in self.pairs for s in pair]
        # Sending a to b makes b readable and b to a makes a readable: K sends.
        for i in range(k):
            a, b = self.pairs[i // 2]
            (a if i % 2 == 0 else b).send(b"x")

    def fds(self) -> List[int]:
        return [s.fileno() for s in self.socks]

    def close(self) -> None:
        for s in self.socks:
            s.close()


def selector(impl: str, backend: str):
    """A new selector: impl 'stdlib' or 'fastmux', backend epoll/poll/select."""
    module = stdlib_selectors if impl == "stdlib" else fast_selectors
    return getattr(module, BACKEND_CLASSES[backend])()


def select_call(impl: str, backend: str, socks: SocketSet) -> Callable[[], list]:
    """``sel.select(0)`` over ``socks``; returns the bound call (selector kept alive)."""
    sel = selector(impl, backend)
    for s in socks.socks:
        sel.register(s, stdlib_selectors.EVENT_READ)
    return sel.select


def raw_poll_call(backend: str, socks: SocketSet) -> Callable[[], object]:
    """The stdlib's raw ``select`` call, building less than a selector must."""
    import select

    if backend == "select":
        fds = socks.fds()
        return lambda: select.select(fds, [], [], 0)
    poller = select.epoll() if backend == "epoll" else select.poll()
    for fd in socks.fds():
        poller.register(fd, select.POLLIN)
    if backend == "epoll":
        n = len(socks.socks)
        return lambda: poller.poll(0, n)
    return lambda: poller.poll(0)


def register_unregister_call(impl: str, backend: str, socks: List[socket.socket]) -> Callable[[], None]:
    """One call registers and at once unregisters each socket in turn (the
    kernel floor does the same ADD/DEL pattern); per-fd cost = time / len."""
    sel = selector(impl, backend)
    register, unregister = sel.register, sel.unregister
    read = stdlib_selectors.EVENT_READ

    def run() -> None:
        for s in socks:
            register(s, read)
            unregister(s)

    run.selector = sel  # type: ignore[attr-defined]  # keep it alive
    return run


def modify_call(impl: str, backend: str, socks: List[socket.socket]) -> Callable[[], None]:
    """One call modifies every socket twice (READ -> READ|WRITE -> READ)."""
    sel = selector(impl, backend)
    read, both = stdlib_selectors.EVENT_READ, stdlib_selectors.EVENT_READ | stdlib_selectors.EVENT_WRITE
    for s in socks:
        sel.register(s, read)
    modify = sel.modify

    def run() -> None:
        for s in socks:
            modify(s, both)
        for s in socks:
            modify(s, read)

    run.selector = sel  # type: ignore[attr-defined]
    return run


def floor_select_ns(socks: SocketSet, rounds: int) -> float:
    """Kernel-only ns per ``epoll_wait(0)`` over ``socks``, timed in C."""
    import select

    from fastmux import _kernel_floor

    with select.epoll() as ep:
        for fd in socks.fds():
            ep.register(fd, select.EPOLLIN)
        ns, _ = _kernel_floor.epoll_wait_ns(ep.fileno(), len(socks.socks), rounds)
    return ns


def floor_ctl_ns(socks: List[socket.socket], rounds: int) -> Dict[str, float]:
    """Kernel-only ns per fd for EPOLL_CTL_ADD+DEL and per EPOLL_CTL_MOD."""
    import select

    from fastmux import _kernel_floor

    fds = [s.fileno() for s in socks]
    with select.epoll() as ep:
        add_del = _kernel_floor.epoll_ctl_add_del_ns(ep.fileno(), fds, rounds)
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        mod = _kernel_floor.epoll_ctl_mod_ns(ep.fileno(), fds, rounds)
    return {"register_unregister": add_del, "modify": mod}
