"""Pure-Python twin of the compiled selectors (``src/fastmux/_selectors_c.pyx``).

Same behaviour, same deliberate differences from the stdlib and the same
fork policy (documented in the compiled module); built on the pure-Python
pollers, so it runs wherever the stdlib ``select`` module does.
"""
from __future__ import annotations

import os
import selectors as _stdlib_selectors
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import _pollers_py as _pollers

SelectorKey = _stdlib_selectors.SelectorKey
BaseSelector = _stdlib_selectors.BaseSelector
EVENT_READ = _stdlib_selectors.EVENT_READ
EVENT_WRITE = _stdlib_selectors.EVENT_WRITE

if hasattr(_pollers, "EPOLLET"):
    EPOLLET = _pollers.EPOLLET
    EPOLLONESHOT = _pollers.EPOLLONESHOT
    EPOLLEXCLUSIVE = _pollers.EPOLLEXCLUSIVE
    EPOLLRDHUP = _pollers.EPOLLRDHUP
    _EPOLL_FLAGS = EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLRDHUP
    _ONESHOT = EPOLLONESHOT
else:  # no epoll on this platform
    _EPOLL_FLAGS = _ONESHOT = 0

_fork_generation = 0


def _child_after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_child_after_fork)

_fileobj_to_fd = _stdlib_selectors._fileobj_to_fd  # same errors and messages


def _poller_events(events: int) -> int:
    return (_pollers.POLLIN if events & EVENT_READ else 0) | (_pollers.POLLOUT if events & EVENT_WRITE else 0)


def _check_events(events: Any) -> int:
    if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
        raise ValueError(f"Invalid events: {events!r}")
    return int(events)


class _SelectorMapping(Mapping):
    """Read-only live view of a selector's registrations: fileobj -> key."""

    __slots__ = ("_selector", "_fd_to_key")

    def __init__(self, selector: "_Selector", fd_to_key: Dict[int, SelectorKey]) -> None:
        self._selector = selector
        self._fd_to_key = fd_to_key

    def __len__(self) -> int:
        return len(self._fd_to_key)

    def __getitem__(self, fileobj: Any) -> SelectorKey:
        try:
            return self._fd_to_key[self._selector._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._fd_to_key)


class _Selector(BaseSelector):
    """Shared by the three selectors; the subclass picks the poller."""

    _allowed_flags = 0

    def __init__(self) -> None:
        self._poller = self._new_poller()
        self._fd_to_key: Dict[int, SelectorKey] = {}
        self._flags: Dict[int, int] = {}
        self._map: Optional[_SelectorMapping] = _SelectorMapping(self, self._fd_to_key)
        self._closed = False
        self._generation = _fork_generation

    def _new_poller(self) -> Any:
        raise TypeError("use EpollSelector, PollSelector or SelectSelector")

    def _fileobj_lookup(self, fileobj: Any) -> int:
        """fd of ``fileobj``; falls back to a search of the registrations so a
        closed file object that is still registered can be unregistered."""
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed {type(self).__name__}")
        if self._generation != _fork_generation:
            self._after_fork()

    def _after_fork(self) -> None:
        self._generation = _fork_generation

    def _check_flags(self, flags: int) -> int:
        if flags & ~self._allowed_flags:
            raise ValueError(f"flags {flags:#x} not supported by {type(self).__name__}")
        return flags

    def _forget(self, fd: int) -> None:
        self._fd_to_key.pop(fd, None)
        self._flags.pop(fd, None)

    def register(self, fileobj: Any, events: int, data: Any = None, *, flags: int = 0) -> SelectorKey:
        """Register ``fileobj`` for ``events`` (EVENT_READ | EVENT_WRITE) with
        optional ``data``; returns its ``SelectorKey``."""
        ev = _check_events(events)
        f = self._check_flags(flags) if flags else 0
        fd = self._fileobj_lookup(fileobj)
        if fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        self._check_open()
        self._poller.register(fd, _poller_events(ev) | f)
        key = SelectorKey(fileobj, fd, events, data)
        self._fd_to_key[fd] = key
        self._flags[fd] = f
        return key

    def unregister(self, fileobj: Any) -> SelectorKey:
        """Unregister ``fileobj``; returns its ``SelectorKey``.  An fd closed
        since it was registered is unregistered without an error."""
        fd = self._fileobj_lookup(fileobj)
        key = self._fd_to_key.get(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        self._forget(fd)
        if not self._closed:
            if self._generation != _fork_generation:
                self._after_fork()
            try:
                self._poller.unregister(fd)
            except OSError:
                pass  # the fd was closed since it was registered
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None, *, flags: Optional[int] = None) -> SelectorKey:
        """Change the events and data of a registered ``fileobj``.
        ``flags=None`` keeps the epoll flags; a one-shot registration is
        re-armed by every modify, even with unchanged events."""
        self._check_open()  # a closed selector: ValueError, not KeyError
        fd = self._fileobj_lookup(fileobj)
        key = self._fd_to_key.get(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        old_flags = self._flags[fd]
        f = old_flags if flags is None else self._check_flags(flags)
        changed = False
        if events != key.events or f != old_flags or f & _ONESHOT:
            ev = _check_events(events)
            self._check_open()
            # A modify the kernel refuses changes nothing, here or there.
            self._poller.modify(fd, _poller_events(ev) | f)
            self._flags[fd] = f
            changed = True
        if data is not key.data and data != key.data:
            changed = True
        if changed:
            key = SelectorKey(key.fileobj, fd, events, data)
            self._fd_to_key[fd] = key
        return key

    def select(self, timeout: Optional[float] = None) -> List[Tuple[SelectorKey, int]]:
        """Wait up to ``timeout`` seconds (None: forever; <= 0: poll) and
        return ``[(key, events)]`` for the ready file objects."""
        t = -1.0 if timeout is None else max(timeout, 0)
        self._check_open()
        ready = []
        fd_to_key = self._fd_to_key
        for fd, ev in self._poller.poll(t):
            key = fd_to_key.get(fd)
            if key is None:
                continue  # unregistered while the wait ran
            events = 0
            if ev & ~_pollers.POLLIN:
                events = EVENT_WRITE
            if ev & ~_pollers.POLLOUT:
                events |= EVENT_READ
            ready.append((key, events & key.events))
        return ready

    def _select_data(self, timeout: Optional[float] = None) -> List[Any]:
        """``select()`` for the reactor: ``[data, events, data, events, ...]``, flat
        (the compiled selector's reads no key; here it is select()'s result)."""
        flat: List[Any] = []
        for key, events in self.select(timeout):
            flat.append(key.data)
            flat.append(events)
        return flat

    def close(self) -> None:
        """Close the selector and drop every registration."""
        if not self._closed:
            self._closed = True
            self._fd_to_key.clear()
            self._flags.clear()
            self._map = None
            self._poller.close()

    def get_key(self, fileobj: Any) -> SelectorKey:
        """The ``SelectorKey`` of a registered ``fileobj`` (KeyError if none)."""
        mapping = self._map
        if mapping is None:
            raise RuntimeError("Selector is closed")
        try:
            return mapping[fileobj]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def get_map(self) -> Optional[Mapping]:
        """A read-only live mapping of file objects to keys (None once closed)."""
        return self._map

    def _key_from_fd(self, fd: int) -> Optional[SelectorKey]:
        """The key registered for ``fd``, or None."""
        return self._fd_to_key.get(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class EpollSelector(_Selector):
    """Epoll-based selector.  ``register``/``modify`` accept ``flags``, any of
    ``EPOLLET`` (edge-triggered), ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE``
    (add only) and ``EPOLLRDHUP``, or'ed into the registration."""

    _allowed_flags = _EPOLL_FLAGS

    def _new_poller(self) -> Any:
        return _pollers.Epoll()

    def fileno(self) -> int:
        """The epoll instance's file descriptor."""
        return self._poller.fileno()

    def _after_fork(self) -> None:
        # See the fork policy in the compiled module's docstring.
        old, self._poller = self._poller, _pollers.Epoll()
        self._generation = _fork_generation
        old.close()
        for fd, key in self._fd_to_key.items():
            try:
                self._poller.register(fd, _poller_events(key.events) | self._flags[fd])
            except OSError:
                pass


class PollSelector(_Selector):
    """Poll-based selector."""

    def _new_poller(self) -> Any:
        return _pollers.Poll()


class SelectSelector(_Selector):
    """Select-based selector (fds below FD_SETSIZE only)."""

    def _new_poller(self) -> Any:
        return _pollers.Select()


DefaultSelector = EpollSelector if "epoll" in _pollers.BACKENDS else PollSelector
