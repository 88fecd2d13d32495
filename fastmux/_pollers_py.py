"""Pure-Python twin of the compiled pollers (``src/fastmux/_pollers_c.pyx``).

Same interface and policies, built on the stdlib ``select`` module: timeouts
in seconds for every backend, ``FileExistsError`` for a double ``register``,
``FileNotFoundError`` for ``modify``/``unregister`` of an unknown fd,
``ValueError`` once closed, ``RuntimeError`` for concurrent waits.  The
stdlib retries EINTR itself (PEP 475).
"""
from __future__ import annotations

import errno
import math
import os
import select
from typing import Any, List, Optional, Set, Tuple

BACKENDS = tuple(name for name in ("epoll", "poll", "select") if hasattr(select, name))

POLLIN = select.POLLIN
POLLPRI = select.POLLPRI
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLNVAL = select.POLLNVAL
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
FD_SETSIZE = 1024
if hasattr(select, "epoll"):
    from select import (  # noqa: F401  re-exported like the compiled module
        EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLMSG, EPOLLONESHOT,
        EPOLLOUT, EPOLLPRI, EPOLLRDBAND, EPOLLRDHUP, EPOLLRDNORM, EPOLLWRBAND, EPOLLWRNORM,
    )
    EPOLLWAKEUP = 1 << 29

DEFAULT_MASK = POLLIN | POLLPRI | POLLOUT
_INT_MAX = 2**31 - 1
Events = List[Tuple[int, int]]


def _fd_of(fileobj: Any) -> int:
    """``PyObject_AsFileDescriptor``: an int, or an object with ``fileno()``."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            meth = fileobj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        fd = meth()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _seconds(timeout: Any) -> float:
    """``PyFloat_AsDouble``'s rules: a number, never a string to parse."""
    cls = type(timeout)
    if not (hasattr(cls, "__float__") or hasattr(cls, "__index__")):
        raise TypeError(f"must be real number, not {cls.__name__}")
    return float(timeout)


def _timeout_ms(timeout: float) -> int:
    """Seconds -> milliseconds rounded up; negative means forever (-1)."""
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        return -1
    ms = math.ceil(timeout * 1e3)
    if ms > _INT_MAX:
        raise OverflowError("timeout is too large")
    return ms


class Poller:
    """Base of the three pollers; not instantiable on its own."""

    def __init__(self) -> None:
        if type(self) is Poller:
            raise TypeError("Poller is abstract: use Epoll, Poll or Select")
        self._closed = False
        self._waiting = False
        self._events: dict = {}  # fd -> mask

    def _name(self) -> str:
        return type(self).__name__.lower()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed {self._name()} object")

    def register(self, fd: Any, eventmask: int = DEFAULT_MASK) -> None:
        """Watch ``fd`` (an int or an object with ``fileno()``) for ``eventmask``."""
        fd = _fd_of(fd)
        self._check_open()
        if fd in self._events:
            raise _oserror(errno.EEXIST)
        self._add(fd, eventmask)
        self._events[fd] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        """Change the events watched on a registered ``fd``."""
        fd = _fd_of(fd)
        self._check_open()
        if fd not in self._events:
            raise _oserror(errno.ENOENT)
        self._mod(fd, eventmask)
        self._events[fd] = eventmask

    def unregister(self, fd: Any) -> None:
        """Stop watching ``fd``."""
        fd = _fd_of(fd)
        self._check_open()
        if fd not in self._events:
            raise _oserror(errno.ENOENT)
        del self._events[fd]
        self._del(fd)

    def poll(self, timeout: Optional[float] = None, maxevents: int = -1) -> Events:
        """Wait up to ``timeout`` seconds (None or negative: forever) and
        return a list of ``(fd, events)`` for the ready fds."""
        self._check_open()
        if self._waiting:
            raise RuntimeError(f"concurrent poll() on the same {type(self).__name__} object")
        if maxevents == 0:
            raise ValueError("maxevents must be greater than 0, got 0")
        t = -1.0 if timeout is None else _seconds(timeout)
        self._waiting = True
        try:
            ready = self._wait(t, maxevents)
        finally:
            self._waiting = False
        return ready if maxevents < 0 else ready[:maxevents]

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Release the kernel resources; further use raises ValueError."""
        self._closed = True
        self._events.clear()

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # backend hooks
    def _add(self, fd: int, mask: int) -> None:
        raise NotImplementedError

    def _mod(self, fd: int, mask: int) -> None:
        raise NotImplementedError

    def _del(self, fd: int) -> None:
        raise NotImplementedError

    def _wait(self, timeout: float, maxevents: int) -> Events:
        raise NotImplementedError


class Epoll(Poller):
    """An epoll instance (close-on-exec).  Extra flags (``EPOLLET``,
    ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE``, ``EPOLLRDHUP``) may be or'ed into
    ``eventmask``.  Parent and child share it after ``fork()``."""

    def __init__(self) -> None:
        super().__init__()
        self._ep = select.epoll()

    def fileno(self) -> int:
        """The epoll instance's own file descriptor."""
        self._check_open()
        return self._ep.fileno()

    def close(self) -> None:
        super().close()
        self._ep.close()

    # The kernel, not a Python dict, is the authority on epoll registrations:
    # an fd closed behind our back leaves the kernel (and so must leave us).
    def register(self, fd: Any, eventmask: int = DEFAULT_MASK) -> None:
        self._check_open()
        self._ep.register(fd, eventmask)
        self._events[_fd_of(fd)] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        self._check_open()
        self._ep.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._check_open()
        fd = _fd_of(fd)
        self._events.pop(fd, None)
        self._ep.unregister(fd)

    def _wait(self, timeout: float, maxevents: int) -> Events:
        if maxevents < 0:
            maxevents = max(len(self._events), 1)
        ms = _timeout_ms(timeout)
        return self._ep.poll(-1 if ms < 0 else ms / 1e3, maxevents)


class Poll(Poller):
    """A poll(2) set; the kernel scans every registered fd on each wait."""

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()

    def _add(self, fd: int, mask: int) -> None:
        self._poll.register(fd, mask)

    _mod = _add  # poll.register() of a known fd replaces its mask

    def _del(self, fd: int) -> None:
        self._poll.unregister(fd)

    def _wait(self, timeout: float, maxevents: int) -> Events:
        return self._poll.poll(_timeout_ms(timeout))


class Select(Poller):
    """A select(2) set: fds below FD_SETSIZE only (ValueError at register).
    POLLIN watches readability, POLLOUT writability, POLLPRI exceptional
    conditions."""

    def __init__(self) -> None:
        super().__init__()
        self._sets: Tuple[Set[int], Set[int], Set[int]] = (set(), set(), set())

    def _check_fd(self, fd: int) -> None:
        if fd >= FD_SETSIZE:
            raise ValueError(f"file descriptor {fd} out of range for select() (FD_SETSIZE is {FD_SETSIZE})")

    def register(self, fd: Any, eventmask: int = DEFAULT_MASK) -> None:
        self._check_open()
        self._check_fd(_fd_of(fd))
        super().register(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._check_open()
        self._check_fd(_fd_of(fd))
        super().modify(fd, eventmask)

    def _add(self, fd: int, mask: int) -> None:
        for bit, watched in zip((POLLIN, POLLOUT, POLLPRI), self._sets):
            if mask & bit:
                watched.add(fd)
            else:
                watched.discard(fd)

    _mod = _add

    def _del(self, fd: int) -> None:
        for watched in self._sets:
            watched.discard(fd)

    def _wait(self, timeout: float, maxevents: int) -> Events:
        if timeout != timeout:
            raise ValueError("Invalid value NaN (not a number)")
        if timeout > _INT_MAX:
            raise OverflowError("timeout is too large")
        r, w, x = select.select(*self._sets, None if timeout < 0 else timeout)
        ready = []
        r, w, x = set(r), set(w), set(x)
        for fd in self._events:
            ev = (POLLIN if fd in r else 0) | (POLLOUT if fd in w else 0) | (POLLPRI if fd in x else 0)
            if ev:
                ready.append((fd, ev))
        return ready
