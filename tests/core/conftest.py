"""Fixtures for the compiled-core suite: sockets and raw fds that always get
closed, a raised descriptor limit, and a SIGALRM timer that is always
cancelled."""
from __future__ import annotations

import os
import resource
import signal
import socket
from typing import Callable, List, Tuple

import pytest

SocketPair = Tuple[socket.socket, socket.socket]


@pytest.fixture
def socketpair() -> Callable[[], SocketPair]:
    """A factory of connected AF_UNIX stream pairs, closed at teardown."""
    made: List[socket.socket] = []

    def make() -> SocketPair:
        a, b = socket.socketpair()
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


@pytest.fixture
def pair(socketpair) -> SocketPair:
    """One connected pair; ``pair[0]`` is the end under test."""
    return socketpair()


class FdRegistry:
    """Raw fds made by a test: ``close(fd)`` closes one early, the rest are
    closed at teardown (never by number alone, which could be reused)."""

    def __init__(self) -> None:
        self._open: List[int] = []

    def add(self, fd: int) -> int:
        self._open.append(fd)
        return fd

    def pipe(self) -> Tuple[int, int]:
        r, w = os.pipe()
        return self.add(r), self.add(w)

    def close(self, fd: int) -> None:
        self._open.remove(fd)
        os.close(fd)

    def close_all(self) -> None:
        while self._open:
            os.close(self._open.pop())


@pytest.fixture
def fds():
    reg = FdRegistry()
    yield reg
    reg.close_all()


@pytest.fixture(params=["socket", "fd"])
def handle(request) -> Callable[[socket.socket], object]:
    """Every call is tested with a socket object and with its raw fd."""
    if request.param == "socket":
        return lambda sock: sock
    return lambda sock: sock.fileno()


@pytest.fixture
def nofile():
    """``nofile(n)`` raises the soft RLIMIT_NOFILE to at least ``n`` (up to the
    hard limit; skips the test if that is not enough); restored at teardown."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)

    def need(n: int) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < n:
            if hard != resource.RLIM_INFINITY and hard < n:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {n}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    yield need
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


@pytest.fixture
def sigalrm():
    """``sigalrm(handler, delay, interval=0)`` installs ``handler`` for SIGALRM
    and starts ITIMER_REAL; the timer is cancelled and the old handler put
    back at teardown, whatever the test did."""
    old = signal.getsignal(signal.SIGALRM)

    def arm(handler, delay: float, interval: float = 0.0) -> None:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, delay, interval)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
