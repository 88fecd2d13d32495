"""The reactor's backend: one selector, the wake-up fd, and the kernel's traps.

The loop talks to the kernel only through :class:`FdWatch`, a small
interface in the spirit of trio's IO managers: ``register`` / ``modify`` /
``unregister`` (with optional epoll flags), ``wait(deadline)`` /
``poll()`` for the ready list, ``rebuild()``, ``close()`` and
``statistics()``.  The selector inside comes from ``fastmux.selectors``
(``EpollSelector``, ``PollSelector`` or ``SelectSelector``, or one you pass
in), so the compiled core speeds up the reactor without the reactor knowing.

What this layer absorbs, so the loop above it stays simple (the policy is
argued in the essay at the top of ``loop.py``):

* **Regular files.** ``epoll_ctl`` refuses them (EPERM), while ``poll`` and
  ``select`` report them always ready.  Here an EPERM registration becomes
  an *always-ready* entry: ``wait`` returns it every time and never blocks
  while one exists, which is what ``select`` would have said.
* **Closed-and-reused fds.** If a user closes an fd without removing it, the
  kernel forgets the registration but the selector's table does not.  A new
  file that gets the same number then fails to register ("already
  registered"): the stale owner is handed to ``on_stale`` (the loop drops it
  and reports), and the new file is registered.  ``modify`` that fails with
  ENOENT (the kernel lost it) re-adds.  A ``select`` that fails with EBADF
  finds the closed fds, unregisters them and hands them to ``on_bad_fd``
  instead of killing the loop.  Under epoll a reused number also rebuilds
  the epoll set (``shed_stale``): the old file may live on through a dup.
* **Stale kernel registrations.** An fd closed while registered, whose file
  lives on through a dup() or a fork, keeps firing under its old number and
  cannot be removed (trio's essay explains why).  The selector drops events
  for fds it does not know, so the symptom is a wait that returns early
  with nothing: a busy loop.  After ``SPURIOUS_LIMIT`` such returns in a row
  the epoll instance is rebuilt from the live registrations, which is the
  only way to shed an entry that can no longer be named.
* **Timeout precision.** epoll and poll take whole milliseconds and round up,
  so a 0.3 ms timer would wait 1 ms and a loop that rounded *down* would
  spin.  ``wait`` never rounds down: with epoll it sleeps in the epoll call
  until less than ``FINE_UNITS`` resolution units remain, then finishes the
  wait in ``select()`` on the epoll fd itself (an epoll fd is readable when
  it has events), whose timeout is in microseconds.  That costs one extra
  syscall only for waits that end within 2 ms of a timer.  ``select`` is
  microsecond-precise already; ``poll`` stays millisecond-granular (rounded
  up: late by under 1 ms, never early, never spinning).
"""
from __future__ import annotations

import errno
import inspect
import os
import select as _select_mod
import selectors as _stdlib_selectors
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import selectors as _selectors

EVENT_READ: int = _selectors.EVENT_READ
EVENT_WRITE: int = _selectors.EVENT_WRITE
SelectorKey = _selectors.SelectorKey

# The flag values are the kernel's; prefer the selectors module's spelling.
# Normalised to the unsigned 32-bit value: a C enum constant exported as a
# Python int can come out negative (EPOLLET is bit 31), which an unsigned
# flags parameter then refuses.
EPOLLET: int = getattr(_selectors, "EPOLLET", getattr(_select_mod, "EPOLLET", 1 << 31)) & 0xFFFFFFFF
EPOLLEXCLUSIVE: int = getattr(_selectors, "EPOLLEXCLUSIVE",
                              getattr(_select_mod, "EPOLLEXCLUSIVE", 1 << 28)) & 0xFFFFFFFF

BACKENDS: Tuple[str, ...] = ("epoll", "poll", "select")
_CLASS_NAMES = {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}
_RESOLUTION = {"epoll": 1e-3, "poll": 1e-3, "select": 1e-6}

SPURIOUS_LIMIT = 8  # empty early returns in a row before an epoll rebuild
FINE_UNITS = 2  # finish waits shorter than this many resolution units precisely
MAX_TIMEOUT = 24 * 3600.0  # epoll/poll take an int of milliseconds
FD_SETSIZE = 1024

_monotonic = time.monotonic
_select = _select_mod.select


def available_backends() -> List[str]:
    """Backends that this platform and ``fastmux.selectors`` provide, best first."""
    out = []
    for name in BACKENDS:
        cls = getattr(_selectors, _CLASS_NAMES[name], None)
        if cls is not None and hasattr(_select_mod, name):
            out.append(name)
    return out


def best_backend() -> str:
    return available_backends()[0]


# The fd number of an int or of an object with ``fileno()``, with the
# selectors module's errors (the same helper the selector twins use).
fileno_of = _stdlib_selectors._fileobj_to_fd


def selector_supports_flags(sel: Any) -> bool:
    """Does ``sel.register`` take ``flags=`` (fastmux's epoll extension)?"""
    try:
        params = inspect.signature(sel.register).parameters
    except (TypeError, ValueError):  # a compiled method without a signature
        mod = sys.modules.get(type(sel).__module__)
        return mod is not None and hasattr(mod, "EPOLLET")
    return "flags" in params


def _backend_of(sel: Any) -> str:
    name = type(sel).__name__.lower()
    for backend in BACKENDS:
        if name.startswith(backend):
            return backend
    return "epoll" if hasattr(sel, "fileno") else "poll"


class FdWatch:
    """One selector plus the policies described in the module docstring.

    ``on_stale(key)`` is called with the key of an owner whose fd was closed
    and reused behind the reactor's back; ``on_bad_fd(key, exc)`` with the
    key of an fd found closed (EBADF).  Both must drop the owner's state; the
    registration itself is already gone when they are called.
    """

    def __init__(
        self,
        backend: Optional[str] = None,
        *,
        edge: bool = False,
        selector: Any = None,
        on_stale: Optional[Callable[[Any], None]] = None,
        on_bad_fd: Optional[Callable[[Any, OSError], None]] = None,
    ) -> None:
        made_here = selector is None
        if selector is None:
            if backend is None:
                backend = best_backend()
            if backend not in BACKENDS:
                raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
            if backend not in available_backends():
                raise ValueError(f"backend {backend!r} is not available on this platform")
            if edge and backend != "epoll":
                raise ValueError(f"edge-triggered mode needs the epoll backend, not {backend!r}")
            selector = getattr(_selectors, _CLASS_NAMES[backend])()
        elif backend is None:
            backend = _backend_of(selector)
        self.name: str = backend
        self._sel = selector
        self.flags_ok: bool = backend == "epoll" and selector_supports_flags(selector)
        if edge and (backend != "epoll" or not self.flags_ok):
            if made_here:
                selector.close()
            if backend != "epoll":
                raise ValueError(f"edge-triggered mode needs the epoll backend, not {backend!r}")
            raise RuntimeError(
                "edge-triggered mode needs an epoll selector whose register() takes flags= "
                "(fastmux.selectors with flag support)"
            )
        self.edge: bool = bool(edge)
        self.resolution: float = _RESOLUTION.get(backend, 1e-3)
        self._exclusive_ok = self.flags_ok
        # fastmux's selectors hand the ready list out flat, by registration data
        # (_select_data); any other is converted (_ready_list), and so is a
        # wrapper that only forwards attributes to one of ours (whose select()
        # is what it watches)
        self._flat_native: bool = hasattr(type(selector), "_select_data")
        self._on_stale = on_stale
        self._on_bad_fd = on_bad_fd
        self._always: Dict[int, Any] = {}  # fd -> SelectorKey: regular files under epoll
        self._flags: Dict[int, int] = {}  # fd -> epoll flags it was registered with
        self._spurious = 0
        self.rebuilds = 0
        self.spurious_total = 0
        self.stale_total = 0
        self._setup_fine_wait()

    def _setup_fine_wait(self) -> None:
        self._fine_below = 0.0
        self._fine_fds: List[int] = []
        if self.name == "epoll":
            try:
                epfd = self._sel.fileno()
            except (AttributeError, OSError, ValueError):
                return
            if 0 <= epfd < FD_SETSIZE:
                self._fine_below = FINE_UNITS * self.resolution
                self._fine_fds = [epfd]

    # -- registrations ---------------------------------------------------

    def _add(self, fileobj: Any, fd: int, events: int, data: Any, flags: int) -> None:
        sel = self._sel
        if flags and self.flags_ok:
            if flags & EPOLLEXCLUSIVE and not self._exclusive_ok:
                flags &= ~EPOLLEXCLUSIVE
            try:
                sel.register(fileobj, events, data, flags=flags)
            except OSError as exc:
                if not (flags & EPOLLEXCLUSIVE and exc.errno == errno.EINVAL):
                    raise
                # a kernel before 4.5: no EPOLLEXCLUSIVE; remember, and go without
                self._exclusive_ok = False
                flags &= ~EPOLLEXCLUSIVE
                sel.register(fileobj, events, data, flags=flags)
            if flags:
                self._flags[fd] = flags
        else:
            sel.register(fileobj, events, data)

    def register(self, fileobj: Any, events: int, data: Any, flags: int = 0) -> None:
        """Watch ``fileobj`` for ``events``; ready lists carry ``data``."""
        fd = fileno_of(fileobj)
        if self.name == "select" and fd >= FD_SETSIZE:
            raise ValueError(f"fd {fd} is too large for select() (FD_SETSIZE={FD_SETSIZE}); use epoll or poll")
        old = self._always.get(fd)
        if old is not None:
            if old.data is data:
                self.modify(fd, events, data)
                return
            self._forget_stale(old)
        try:
            self._add(fileobj, fd, events, data, flags)
        except KeyError:
            # The selector's table has this fd: its previous owner closed it
            # without unregistering, and the number was reused.
            old = self._sel.get_key(fd)
            if old.data is data:
                self.modify(fd, events, data)
                return
            self._forget_stale(old)
            self._add(fileobj, fd, events, data, flags)
            self.shed_stale()
        except PermissionError:
            # epoll_ctl: EPERM means "this file does not support polling"
            # (a regular file, /dev/null): report it always ready, as select would.
            if self.name != "epoll" or flags & EPOLLET:
                raise
            self._always[fd] = SelectorKey(fileobj, fd, events, data)

    def shed_stale(self) -> None:
        """Call after registering a number whose previous file was closed
        behind our back.  If that file lives on (a ``dup()``, a fork), epoll
        still holds its (number, file) entry, which no ``epoll_ctl`` can name
        any more, and it now fires under the *new* owner's number: spurious
        events for the wrong owner, and with level-triggered data pending, a
        busy loop (the selector knows the number, so the spurious-wakeup
        rebuild never triggers).  A fresh epoll set sheds it; this path is
        rare (a user's bug), so its O(registrations) cost is fine.  poll and
        select keep no kernel state: nothing to do."""
        if self.name == "epoll":
            self.rebuild()

    def _forget_stale(self, key: Any) -> None:
        self.stale_total += 1
        self.unregister(key.fd)
        if self._on_stale is not None:
            self._on_stale(key)

    def modify(self, fd: int, events: int, data: Any) -> None:
        """Change what ``fd`` is watched for (``events`` must not be 0)."""
        always = self._always.get(fd)
        if always is not None:
            self._always[fd] = SelectorKey(always.fileobj, fd, events, data)
            return
        try:
            self._sel.modify(fd, events, data)
        except FileNotFoundError:
            # ENOENT: the kernel dropped it (closed, then the number reused):
            # add the file that has the number now.  (Some selectors forget
            # the key when modify fails, some keep it.)
            try:
                self._sel.unregister(fd)
            except (KeyError, OSError, ValueError):
                pass
            self._add(fd, fd, events, data, self._flags.pop(fd, 0))
            self.shed_stale()

    def unregister(self, fd: int) -> bool:
        """Stop watching ``fd``; False if it was not watched.  Never raises for a closed fd."""
        if self._always.pop(fd, None) is not None:
            return True
        self._flags.pop(fd, None)
        try:
            self._sel.unregister(fd)
        except KeyError:
            return False
        except (OSError, ValueError):
            pass  # the selector has forgotten it anyway
        return True

    def get_key(self, fd: int) -> Any:
        key = self._always.get(fd)
        if key is not None:
            return key
        try:
            return self._sel.get_key(fd)
        except KeyError:
            return None

    def keys(self) -> List[Any]:
        return list(self._sel.get_map().values()) + list(self._always.values())

    def is_always_ready(self, fd: int) -> bool:
        return fd in self._always

    # -- waiting ---------------------------------------------------------

    def poll(self) -> List[Any]:
        """The ready list without blocking, flat by registration data:
        ``[data, events, data, events, ...]`` (no selector key per event)."""
        try:
            events = self._ready_list(0)
        except OSError as exc:
            return self._select_failed(exc)
        if self._always:
            events = list(events)
            for key in list(self._always.values()):
                events.append(key.data)
                events.append(key.events)
        return events

    def _ready_list(self, timeout: Optional[float]) -> List[Any]:
        if self._flat_native:
            return self._sel._select_data(timeout)
        events: List[Any] = []
        for key, mask in self._sel.select(timeout):
            events.append(key.data)
            events.append(mask)
        return events

    def wait(self, deadline: Optional[float]) -> List[Any]:
        """Block until something is ready or ``deadline`` (monotonic seconds; None:
        forever); the ready list as ``poll()`` gives it."""
        if self._always:
            return self.poll()
        try:
            if deadline is None:
                events = self._ready_list(None)
                if events:
                    self._spurious = 0
                else:
                    self._spurious_wakeup()
                return events
            now = _monotonic()
            timeout = deadline - now
            if timeout <= 0.0:
                return self._ready_list(0)
            if timeout < self._fine_below:
                # Finish a sub-millisecond wait with select()'s microseconds,
                # on the epoll fd itself: readable when epoll has events.
                if not _select(self._fine_fds, (), (), timeout)[0]:
                    return []
                events = self._ready_list(0)
                if events:
                    self._spurious = 0
                else:
                    self._spurious_wakeup()
                return events
            if timeout > MAX_TIMEOUT:
                timeout = MAX_TIMEOUT
            elif self._fine_below:
                timeout -= self.resolution  # wake at most ~1 unit early; the fine wait does the rest
            events = self._ready_list(timeout)
            if events:
                self._spurious = 0
            elif _monotonic() < now + timeout - 2 * self.resolution:
                self._spurious_wakeup()
            return events
        except OSError as exc:
            return self._select_failed(exc)

    def _spurious_wakeup(self) -> None:
        self.spurious_total += 1
        self._spurious += 1
        if self._spurious >= SPURIOUS_LIMIT and self.name == "epoll":
            self._spurious = 0
            self.rebuild()

    def _select_failed(self, exc: OSError) -> List[Any]:
        if exc.errno != errno.EBADF:
            raise exc
        bad = []
        for key in self.keys():
            try:
                os.fstat(key.fd)
            except OSError as err:
                if err.errno == errno.EBADF:
                    bad.append((key, err))
        if not bad:
            raise exc
        for key, err in bad:
            self.unregister(key.fd)
            if self._on_bad_fd is not None:
                self._on_bad_fd(key, err)
        return []

    # -- maintenance -----------------------------------------------------

    def rebuild(self) -> None:
        """Replace the selector with a fresh one holding the same live registrations.

        Sheds kernel registrations that can no longer be named (an fd closed
        while registered whose file lives on); fds found closed go to
        ``on_bad_fd``.
        """
        old = self._sel
        new = type(old)()
        flags = self._flags
        self._flags = {}
        self._sel = new
        bad = []
        for key in list(old.get_map().values()):
            try:
                self._add(key.fd, key.fd, key.events, key.data, flags.get(key.fd, 0))
            except OSError as exc:
                bad.append((key, exc))
        old.close()
        self.rebuilds += 1
        self._setup_fine_wait()
        for key, exc in bad:
            if self._on_bad_fd is not None:
                self._on_bad_fd(key, exc)

    def fileno(self) -> int:
        return self._sel.fileno()

    @property
    def selector(self) -> Any:
        return self._sel

    def close(self) -> None:
        self._always.clear()
        self._flags.clear()
        self._sel.close()

    def statistics(self) -> Dict[str, Any]:
        return {
            "backend": self.name,
            "edge": self.edge,
            "registered": len(self._sel.get_map()),
            "always_ready": len(self._always),
            "rebuilds": self.rebuilds,
            "spurious_wakeups": self.spurious_total,
            "stale_fds": self.stale_total,
        }


class Waker:
    """Thread- and signal-safe wake-up of a blocked ``wait``.

    An eventfd where the OS has one (one fd, writes coalesce in its counter,
    it can never fill up), else a socketpair.  The lock makes ``wake`` and
    ``close`` exclusive, so a thread never writes to an fd number that
    ``close`` has just released (and something else may have reused); it is
    re-entrant because a Python signal handler may call ``wake`` on the
    thread that is inside it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._rsock: Optional[socket.socket] = None
        self._wsock: Optional[socket.socket] = None
        if hasattr(os, "eventfd"):
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.kind = "eventfd"
        else:  # pragma: no cover - pre-3.10 or non-Linux
            self._rsock, self._wsock = socket.socketpair()
            self._rsock.setblocking(False)
            self._wsock.setblocking(False)
            self._fd = self._rsock.fileno()
            self.kind = "socketpair"

    def fileno(self) -> int:
        return self._fd

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._wsock is None:
                    os.eventfd_write(self._fd, 1)
                else:
                    self._wsock.send(b"\0")
            except (BlockingIOError, InterruptedError):
                pass  # already full: the reader will wake anyway

    def drain(self) -> None:
        try:
            if self._rsock is None:
                os.eventfd_read(self._fd)
            else:
                while self._rsock.recv(4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._rsock is None:
                os.close(self._fd)
            else:
                self._rsock.close()
                self._wsock.close()  # type: ignore[union-attr]
