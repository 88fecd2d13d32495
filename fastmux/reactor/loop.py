"""The reactor's hot module: the loop iteration and the stream transport.

Everything a request touches lives here, so that compiling this one module
(Cython, pure-Python mode) covers the whole per-request path:
``select -> key.data._on_io(mask) -> sock.recv -> protocol.data_received ->
transport.write -> sock.send``.  Keep it plain Python that Cython compiles:
no metaprogramming, no closures on the hot path.

One source, two twins
---------------------

This file *is* the pure-Python reactor, and setup.py also compiles it,
unchanged, into ``fastmux.reactor._loop_c``; ``fastmux.reactor`` picks the
compiled one unless ``fastmux._impl`` wants the fallback.  The C types come
from ``src/fastmux/reactor/_loop_c.pxd`` alone (annotations here are for
type checkers; the build ignores them): ``Reactor``, ``StreamTransport``
and ``_EdgeStreamTransport`` become extension types with C attributes, the
hot methods ``cpdef``.  So that a method another module or a test reaches
works in both, attributes they touch are ``public`` there, and whatever
tests patch stays a module global (``MAX_READ``, ``_sigpipe_ignored``).

Three places differ, each an ``if cython.compiled:`` branch that Cython
resolves at compile time (without Cython installed, ``cython`` is a shim
whose ``compiled`` is False): the dispatch calls a transport's ``_on_io``
as a C method, and a transport's ``recv``/``send`` are the system calls
themselves (``_sock_recv``/``_sock_send``, C helpers defined in the .pxd;
the socket methods' argument parsing, timeout bookkeeping and GIL release
cost more than the rest of the path).  Those helpers return what the pure
branch's ``sock.recv``/``sock.send`` do and hand the same ``OSError``
subclasses to ``_fatal_error`` as its ``except`` clauses (as values, so the
per-request path enters no try block), and both twins run the whole reactor
suite (``tests/reactor``).
After editing this file, rebuild (``python setup.py build_ext --inplace``):
``tests/reactor/test_twin.py`` fails on a stale compiled twin.

How one iteration goes (``Reactor._run_once``)
----------------------------------------------

1. Wait: not at all if callbacks are ready, work was re-queued (below) or
   ``stop()`` was called; until the earliest timer; or forever.
   ``FdWatch.wait`` turns the deadline into a kernel timeout without ever
   rounding down (no spinning) and finishes sub-millisecond waits with
   microsecond precision (see ``_fdwatch``).
2. Dispatch: every ready selector key's ``data`` *is* the object that owns
   the fd (a transport, a listening socket, an add_reader entry, the
   wake-up fd), and the loop calls ``data._on_io(mask)`` directly.  There is
   no Handle, no ready-queue round trip and no allocation per event.
3. Re-queued work from the previous iteration (edge-triggered drains that
   ran out of budget, ``resume_reading`` in edge mode).
4. The callbacks that were ready when this step began (``call_soon``,
   ``call_soon_threadsafe``, signal handlers, connection_lost...).
5. The timers whose deadline has passed, in deadline order, then
   scheduling order.

A callback that raises ``Exception`` goes to the exception handler
(``set_exception_handler``; the default logs it with its traceback) and the
loop goes on.  A transport whose *protocol* raises reports the error and
aborts that one connection (``connection_lost(exc)``), as asyncio does.

Level- and edge-triggered, and the traps of epoll
-------------------------------------------------

Some facts first (trio's ``_io_epoll.py`` tells them at length):

* epoll registers (fd number, open file) pairs, and holds the file weakly.
  Closing the last fd of a file removes it from every epoll set; closing one
  of several fds (after ``dup()`` or ``fork()``) does not, and the kernel
  keeps reporting the *old number*, which can no longer be named to
  ``epoll_ctl``: the registration cannot be removed.
* With EPOLLET the kernel reports a transition once.  Whatever is left
  unread after the callback stays unreported until *more* data arrives;
  EOF that arrived with the data is never reported again.
* ``EPOLLONESHOT`` silences an fd after one event until it is re-armed with
  ``EPOLL_CTL_MOD``; ``EPOLLEXCLUSIVE`` (4.5+) wakes one of several epoll
  sets sharing a listening socket, can only be given at ``EPOLL_CTL_ADD``
  and cannot be combined with ONESHOT.
* ``epoll_ctl`` refuses regular files (EPERM); ``poll``/``select`` say they
  are always ready.

The policy fastmux chose:

* **Level-triggered by default** (``Reactor(edge=False)``): the kernel keeps
  reporting until we have read, so a callback that reads a little at a time
  is correct by construction, and fairness is natural (one ``recv`` per fd
  per iteration).  Write interest is turned on only while a transport has
  buffered data, so an idle writable socket costs nothing; that is one
  ``epoll_ctl`` when a buffer starts and one when it drains.
* **Edge-triggered on request** (``Reactor(edge=True)``, epoll only, needs a
  selector that takes ``flags=``): it applies to what the reactor reads
  itself (stream and datagram transports, listening sockets), never to
  ``add_reader``/``add_writer`` callbacks, which stay level-triggered because
  the loop cannot know whether user code drained the fd.

  - *Drain to EAGAIN.*  A readable transport reads until ``recv`` raises
    BlockingIOError, reaches EOF, or its budget (``READ_BUDGET`` calls per
    iteration) runs out.  We do not stop at a short read: data and FIN can
    arrive together, and a short read would leave the EOF unreported forever.
  - *Budget and re-queue.*  An fd that used up its budget is put on the
    loop's re-queue list and drained again next iteration (which then polls
    instead of blocking): the kernel will not report it again, so the loop
    must remember it itself.  One flooding peer gets ``READ_BUDGET`` reads
    per iteration like everyone else and cannot starve them.
  - *No epoll_ctl for interest changes.*  A transport registers
    ``EPOLLIN|EPOLLOUT|EPOLLET`` once and tracks in Python what it wants: a
    write edge with nothing buffered is ignored, ``pause_reading`` just stops
    reading.  Because the edge that came while paused is gone,
    ``resume_reading`` re-queues a read attempt.  A flush that is cut short
    by EAGAIN will get a new EPOLLOUT edge when the socket drains, so a
    flush keeps writing until EAGAIN (not merely until a short write).
  - *Accepting* follows the same rules (``ACCEPT_BUDGET`` per iteration,
    then re-queue).  If ``run_forever`` is interrupted by a BaseException
    (Ctrl-C) in the middle of a ready list, the not-yet-dispatched owners are
    re-queued so their consumed edges are not lost.
* **No EPOLLONESHOT.**  trio uses it so that a stale registration can fire
  at most once, at the price of an ``epoll_ctl`` per wake-up.  That price is
  too high for a loop whose goal is CPU per request, so fastmux handles the
  stale case when it happens instead: the selector drops events for fds it
  does not know, a stale fd therefore shows up as waits that return early
  with nothing, and after a few in a row ``FdWatch`` rebuilds the epoll set
  from the live registrations (the one way to shed an unnameable entry).
* **Closed-but-registered fds.**  Transports own their sockets and always
  unregister before closing.  For ``add_reader`` fds, the loop remembers the
  file's identity (st_dev, st_ino): adding a callback for a number whose file
  changed (closed and reused without ``remove_reader``) drops the stale
  entry, reports it, and registers the new file.  A callback that raises is
  followed by an ``fstat``; EBADF removes the entry instead of reporting the
  same error every iteration.  Under ``select`` a closed fd fails the whole
  call with EBADF: ``FdWatch`` finds it and hands its owner the error.
  Owners whose fd was lost this way ``detach()`` their socket object instead
  of closing it: the number may already belong to someone else.
* **EPOLLEXCLUSIVE** is used for listening sockets when available (several
  processes sharing one inherited socket wake one at a time).  Since it
  cannot be modified, pausing a listener unregisters it and resuming
  registers it again.
* **HUP and ERR wake readers and writers**: the selector reports them as
  both EVENT_READ and EVENT_WRITE, and each path meets the error in its own
  syscall.
* **Regular files** registered with ``add_reader``/``add_writer`` are
  always ready (what ``select`` says) instead of failing: see ``_fdwatch``.

Streams: writes and back-pressure
---------------------------------

``write`` sends at once when nothing is queued and queues only the rest
(a ``memoryview`` of it, not a copy).  Queued buffers go out in one
``sendmsg`` gather (up to IOV_MAX) per flush, and ``sendfile`` items are
queued in order between them and sent with ``os.sendfile`` (zero-copy).
Sends use MSG_NOSIGNAL, and ``os.sendfile`` is used only while SIGPIPE is
ignored (Python's default): a program that restored SIG_DFL gets the
``pread`` + ``send(MSG_NOSIGNAL)`` path instead, so SIGPIPE never kills the
process.  Above the high-water mark the protocol gets ``pause_writing``;
below the low-water mark, ``resume_writing``.
"""
from __future__ import annotations

import collections
import errno
import heapq
import logging
import os
import signal
import socket
import threading
import time
import warnings
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

from ._errors import SENDFILE_FALLBACK_ERRNOS, is_quiet

if cython.compiled:  # each loop twin with its FdWatch twin (setup.py TWIN_MODULES)
    # FdWatch itself is cimported by _loop_c.pxd: the loop calls it in C.
    from ._fdwatch_c import EPOLLET, EVENT_READ, EVENT_WRITE, Waker, fileno_of
else:
    from ._fdwatch import EPOLLET, EVENT_READ, EVENT_WRITE, FdWatch, Waker, fileno_of
from .handles import Handle, TimerHandle

__all__ = ["Reactor", "StreamTransport"]

logger = logging.getLogger("fastmux.reactor")

READ_BUDGET = 16  # edge-triggered: recv calls per fd per iteration before re-queueing
# Bytes asked of one recv.  sock.recv(n) allocates n bytes and shrinks the
# result; above glibc's mmap/trim thresholds (128 KiB) that allocation costs
# syscalls and page faults: measured on a 64-byte message, recv(256 KiB) took
# 7-25 us against 3 us for recv(64 KiB).  recv_into a reused buffer plus the
# copy out was slower still (4.5 us): Python needs a bytes object anyway.
MAX_READ = 64 * 1024
SENDFILE_MAX = 1 << 30  # bytes asked of one os.sendfile
DEFAULT_HIGH_WATER = 64 * 1024
TIMER_PURGE_MIN = 100  # purge cancelled timers once there are this many...
# ...and they are more than half of the heap
try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16
MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
# Bytes sent just before a file range say "more follows": the kernel then puts
# them in the file's first segment instead of a small packet of their own
# (nginx's tcp_nopush, per send).  At 1 MiB over loopback, a response head in
# its own packet halved what wrk could fetch per second.
MSG_MORE = getattr(socket, "MSG_MORE", 0)
_SHUT_WR = socket.SHUT_WR
_SIGPIPE = getattr(signal, "SIGPIPE", None)

_monotonic = time.monotonic
_warn = warnings.warn  # kept for __del__ at interpreter shutdown
_heappush = heapq.heappush
_heappop = heapq.heappop

PathOrFd = Union[int, Any]


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)  # our own copy: the caller may reuse its buffer
    raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}")


def _file_ident(fd: int) -> Tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _sigpipe_ignored() -> bool:
    if _SIGPIPE is None:
        return True
    try:
        return signal.getsignal(_SIGPIPE) == signal.SIG_IGN
    except (ValueError, OSError):  # pragma: no cover
        return False


class _FdCallbacks:
    """The reader and writer callbacks of one fd given to add_reader/add_writer."""

    __slots__ = ("loop", "fd", "fileobj", "ident", "reader", "writer", "_io_requeued")

    def __init__(self, loop: "Reactor", fd: int, fileobj: Any, ident: Tuple[int, int]) -> None:
        self.loop = loop
        self.fd = fd
        self.fileobj = fileobj
        self.ident = ident
        self.reader: Optional[Handle] = None
        self.writer: Optional[Handle] = None
        self._io_requeued = False

    def events(self) -> int:
        return (EVENT_READ if self.reader is not None else 0) | (EVENT_WRITE if self.writer is not None else 0)

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ:
            h = self.reader
            if h is not None and not h._cancelled:
                try:
                    h._callback(*h._args)
                except Exception as exc:
                    self.loop._fd_callback_failed(self, h, exc)
        if mask & EVENT_WRITE:
            h = self.writer  # re-read: the reader may have removed it
            if h is not None and not h._cancelled:
                try:
                    h._callback(*h._args)
                except Exception as exc:
                    self.loop._fd_callback_failed(self, h, exc)

    def _io_retry(self) -> None:  # only after an interrupted dispatch; level-triggered anyway
        self._io_requeued = False

    def drop(self) -> None:
        for h in (self.reader, self.writer):
            if h is not None:
                h.cancel()
        self.reader = self.writer = None

    def __repr__(self) -> str:
        return f"<fd {self.fd} reader={self.reader!r} writer={self.writer!r}>"


class _WakeupReader:
    """Drains the wake-up fd, *then* clears the loop's 'a wake-up is pending' flag.

    In that order: a thread that finds the flag clear writes a wake-up that no
    drain of this call can consume, so the flag is never left set with the fd
    empty (clearing first let a wake-up written between the clear and the
    read be swallowed, after which no thread ever woke the loop again).  A
    callback appended between the drain and the clear wrote nothing, but it
    is already in ``_ready``, which this same iteration runs (step 4).
    """

    __slots__ = ("loop", "waker", "_io_requeued")

    def __init__(self, loop: "Reactor", waker: Waker) -> None:
        self.loop = loop
        self.waker = waker
        self._io_requeued = False

    def _on_io(self, mask: int) -> None:
        self.waker.drain()
        self.loop._wake_pending = False

    def _io_retry(self) -> None:
        self._io_requeued = False


class Reactor:
    """A callback event loop over epoll, poll or select.

    ``backend``: ``"epoll"``, ``"poll"`` or ``"select"`` (default: the best
    available).  ``edge=True``: edge-triggered transports (epoll with flag
    support only; see the module docstring).  ``selector``: use this
    ``selectors.BaseSelector`` instance instead of making one.
    """

    def __init__(self, backend: Optional[str] = None, *, edge: bool = False, selector: Any = None) -> None:
        self._closed = True  # until fully built: a half-built reactor has nothing to release
        self._watch = FdWatch(backend, edge=edge, selector=selector,
                              on_stale=self._on_stale_fd, on_bad_fd=self._on_bad_fd)
        self._edge: bool = self._watch.edge
        self._stream_cls = _EdgeStreamTransport if self._edge else StreamTransport
        self._ready: Deque[Handle] = collections.deque()
        self._timers: List[Tuple[float, int, TimerHandle]] = []
        self._timer_seq = 0  # ties between equal deadlines go to the earlier call_at
        self._cancelled_timers = 0
        self._requeue: List[Any] = []
        self._fdcb: Dict[int, _FdCallbacks] = {}
        self._owners: Dict[int, Any] = {}  # fd -> transport/listener/connector the reactor owns
        self._servers: set = set()
        self._stopping = False
        self._running = False
        self._thread_id: Optional[int] = None
        self._exception_handler: Optional[Callable[["Reactor", Dict[str, Any]], Any]] = None
        self._default_executor: Any = None
        self._signals: Any = None
        self._wake_pending = False
        self._iterations = 0
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._waker = Waker()
        try:
            self._watch.register(self._waker.fileno(), EVENT_READ, _WakeupReader(self, self._waker))
        except BaseException:
            self._waker.close()
            self._watch.close()
            raise
        self._closed = False

    # -- introspection -----------------------------------------------------

    @property
    def backend(self) -> str:
        """``"epoll"``, ``"poll"`` or ``"select"``."""
        return self._watch.name

    @property
    def edge(self) -> bool:
        """True when transports are edge-triggered."""
        return self._edge

    def statistics(self) -> Dict[str, Any]:
        stats = {
            "iterations": self._iterations,
            "ready": len(self._ready),
            "timers": len(self._timers) - self._cancelled_timers,  # live ones
            "timer_heap": len(self._timers),  # live + cancelled not yet purged
            "cancelled_timers": self._cancelled_timers,
            "requeued": len(self._requeue),
            "fd_callbacks": len(self._fdcb),
            "owned_fds": len(self._owners),
            "servers": len(self._servers),
        }
        stats.update(self._watch.statistics())
        return stats

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running else "idle")
        mode = "edge" if self._edge else "level"
        return f"<Reactor {self._watch.name} {mode} {state}>"

    # -- time and callbacks ---------------------------------------------------

    def time(self) -> float:
        """The loop's clock: ``time.monotonic()`` seconds."""
        return _monotonic()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next iteration, after those already scheduled."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        h = Handle(callback, args)
        self._ready.append(h)
        return h

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """``call_soon`` from any thread (or a Python signal handler); wakes the loop."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        h = Handle(callback, args)
        self._ready.append(h)
        # One wake-up per batch: the flag is cleared by the loop *after* it
        # drains the wake-up fd, so a callback appended after the clear
        # always writes a fresh wake-up that nothing has consumed yet
        # (deque.append and attribute stores are atomic under the GIL; see
        # _WakeupReader).
        if not self._wake_pending:
            self._wake_pending = True
            self._waker.wake()
        return h

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds (sub-millisecond delays are honoured)."""
        return self.call_at(_monotonic() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at ``when`` on the ``time()`` clock."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        h = TimerHandle(when, callback, args, self)
        seq = self._timer_seq
        self._timer_seq = seq + 1
        _heappush(self._timers, (when, seq, h))
        return h

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        timers = self._timers
        if self._cancelled_timers > TIMER_PURGE_MIN and 2 * self._cancelled_timers > len(timers):
            live = []
            for entry in timers:
                h = entry[2]
                if h._cancelled:
                    h._scheduled = False
                else:
                    live.append(entry)
            heapq.heapify(live)
            timers[:] = live
            self._cancelled_timers = 0

    # -- running ---------------------------------------------------------------

    def _check_runnable(self) -> None:
        if self._closed:
            raise RuntimeError("Reactor is closed")
        if self._running:
            raise RuntimeError("Reactor is already running")

    def run_forever(self) -> None:
        """Run until ``stop()``."""
        self._check_runnable()
        self._running = True
        self._thread_id = threading.get_ident()
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._running = False
            self._thread_id = None

    def run_until(self, until: Union[Callable[[], Any], float], timeout: Optional[float] = None) -> bool:
        """Run until ``until()`` is true, or until the deadline ``until`` (a ``time()`` value).

        Returns True when the condition was met (or the deadline reached),
        False when ``timeout`` seconds passed first or ``stop()`` was called.
        The predicate is checked after every iteration; a condition changed
        by another thread should be paired with ``call_soon_threadsafe``.
        """
        self._check_runnable()
        timers = []
        if callable(until):
            predicate = until
        else:
            deadline = float(until)
            timers.append(self.call_at(deadline, _noop))
            predicate = lambda: _monotonic() >= deadline  # noqa: E731
        give_up = None
        if timeout is not None:
            give_up = _monotonic() + timeout
            timers.append(self.call_at(give_up, _noop))
        self._running = True
        self._thread_id = threading.get_ident()
        try:
            while True:
                if predicate():
                    return True
                if self._stopping:
                    return False
                if give_up is not None and _monotonic() >= give_up:
                    return False
                self._run_once()
        finally:
            self._stopping = False
            self._running = False
            self._thread_id = None
            for t in timers:
                t.cancel()

    def stop(self) -> None:
        """Make ``run_forever``/``run_until`` return after the current iteration.

        Called while not running, the next run does one iteration and returns.
        """
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        watch = self._watch
        self._iterations += 1
        requeued = self._requeue
        if requeued:
            self._requeue = []  # what dispatch re-queues now waits for the next iteration
        else:
            requeued = None

        # 1. wait
        if ready or requeued or self._stopping:
            events = watch.poll()
        elif timers:
            while self._cancelled_timers and timers and timers[0][2]._cancelled:
                _heappop(timers)
                self._cancelled_timers -= 1
            events = watch.wait(timers[0][0] if timers else None)
        else:
            events = watch.wait(None)

        # 2. dispatch: the key's data owns the fd
        if events:
            try:
                if cython.compiled:
                    # A transport's _on_io is then a C call (typed in _loop_c.pxd).
                    for key, mask in events:
                        # SelectorKey is a tuple: its data read in C, not through
                        # the namedtuple's attribute descriptor.
                        owner = cython.cast(tuple, key)[3] if isinstance(key, tuple) else key.data
                        try:
                            if isinstance(owner, StreamTransport):
                                transport = owner
                                transport._on_io(mask)
                            else:
                                owner._on_io(mask)
                        except Exception as exc:
                            self._owner_failed(key, exc)
                else:
                    for key, mask in events:
                        try:
                            key.data._on_io(mask)
                        except Exception as exc:
                            self._owner_failed(key, exc)
            except BaseException:
                if self._edge:
                    if requeued:
                        self._requeue.extend(requeued)  # not retried yet; their flags are still set
                    self._requeue_all(events)
                raise

        # 3. edge-triggered work that ran out of budget last iteration
        if requeued:
            done = 0
            try:
                for obj in requeued:
                    done += 1
                    try:
                        obj._io_retry()
                    except Exception as exc:
                        self.call_exception_handler({"message": f"Exception while retrying I/O on {obj!r}",
                                                     "exception": exc})
            except BaseException:
                self._requeue_io(requeued[done - 1])  # the interrupted one
                self._requeue.extend(requeued[done:])  # not retried yet; their flags are still set
                raise

        # 4. ready callbacks
        ntodo = len(ready)
        while ntodo:
            ntodo -= 1
            h = ready.popleft()
            if h._cancelled:
                continue
            try:
                h._callback(*h._args)
            except Exception as exc:
                self._callback_failed(h, exc)

        # 5. due timers, one at a time (an interruption loses none), and only
        # those scheduled before this step: a timer that re-arms itself with
        # delay 0 runs once per iteration, not forever in this one
        if timers:
            end = _monotonic() + self._clock_resolution
            limit = self._timer_seq
            while timers:
                when, seq, h = timers[0]
                if when > end or seq >= limit:
                    break
                _heappop(timers)
                if h._cancelled:
                    self._cancelled_timers -= 1
                    continue
                h._scheduled = False
                try:
                    h._callback(*h._args)
                except Exception as exc:
                    self._callback_failed(h, exc)

    def _requeue_io(self, obj: Any) -> None:
        """Have ``obj._io_retry()`` called next iteration (edge-triggered: the kernel will not remind us)."""
        if not obj._io_requeued:
            obj._io_requeued = True
            self._requeue.append(obj)

    def _requeue_all(self, events: Any) -> None:
        for key, _mask in events:
            retry = getattr(key.data, "_io_retry", None)
            if retry is not None:
                self._requeue_io(key.data)

    # -- errors ---------------------------------------------------------------

    def set_exception_handler(self, handler: Optional[Callable[["Reactor", Dict[str, Any]], Any]]) -> None:
        """``handler(reactor, context)`` receives every error the loop catches; None: the default."""
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable or None, not {handler!r}")
        self._exception_handler = handler

    def get_exception_handler(self) -> Optional[Callable[["Reactor", Dict[str, Any]], Any]]:
        return self._exception_handler

    def default_exception_handler(self, context: Dict[str, Any]) -> None:
        """Log ``context['message']`` and the other keys, with the exception's traceback if any."""
        message = context.get("message") or "Unhandled exception in a reactor callback"
        exc = context.get("exception")
        exc_info: Any = (type(exc), exc, exc.__traceback__) if exc is not None else False
        lines = [str(message)]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            try:
                value = repr(context[key])
            except Exception:
                value = "<unrepresentable>"
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: Dict[str, Any]) -> None:
        """Hand ``context`` to the exception handler; never raises (Exception)."""
        handler = self._exception_handler
        if handler is not None:
            try:
                handler(self, context)
                return
            except Exception as exc:
                context = {"message": "Unhandled error in the exception handler", "exception": exc,
                           "context": context}
        try:
            self.default_exception_handler(context)
        except Exception:  # pragma: no cover - logging itself failed
            pass

    def _callback_failed(self, h: Handle, exc: BaseException) -> None:
        self.call_exception_handler({"message": f"Exception in callback {h._describe()}",
                                     "exception": exc, "handle": h})

    def _owner_failed(self, key: Any, exc: BaseException) -> None:
        self.call_exception_handler({"message": f"Exception while handling I/O on fd {key.fd}",
                                     "exception": exc, "owner": key.data})

    # -- add_reader / add_writer --------------------------------------------------

    def add_reader(self, fd: PathOrFd, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` (a number or an object with fileno()) is readable.

        Level-triggered in every mode.  A regular file is always readable.
        """
        self._add_fd_callback(fd, EVENT_READ, callback, args)

    def add_writer(self, fd: PathOrFd, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        self._add_fd_callback(fd, EVENT_WRITE, callback, args)

    def remove_reader(self, fd: PathOrFd) -> bool:
        """Stop watching ``fd`` for reading; False if it was not watched."""
        return self._remove_fd_callback(fd, EVENT_READ)

    def remove_writer(self, fd: PathOrFd) -> bool:
        """Stop watching ``fd`` for writing; False if it was not watched."""
        return self._remove_fd_callback(fd, EVENT_WRITE)

    def _add_fd_callback(self, fileobj: PathOrFd, event: int, callback: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        if self._closed:
            raise RuntimeError("Reactor is closed")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        fd = fileno_of(fileobj)
        owner = self._owners.get(fd)
        if owner is not None:
            raise RuntimeError(f"fd {fd} is used by {owner!r}; it cannot also take add_reader/add_writer")
        ident = _file_ident(fd)  # raises for a closed fd
        entry = self._fdcb.get(fd)
        stale = entry is not None and entry.ident != ident
        if stale:
            self._drop_fd_entry(entry, "was closed and reused without remove_reader/remove_writer; "
                                       "its old callbacks were dropped")
            entry = None
        handle = Handle(callback, args)
        if entry is None:
            entry = _FdCallbacks(self, fd, fileobj, ident)
            if event == EVENT_READ:
                entry.reader = handle
            else:
                entry.writer = handle
            self._watch.register(fd, event, entry)
            self._fdcb[fd] = entry
            if stale:
                self._watch.shed_stale()  # the old file may live on (dup): see FdWatch.shed_stale
            return
        old = entry.reader if event == EVENT_READ else entry.writer
        if event == EVENT_READ:
            entry.reader = handle
        else:
            entry.writer = handle
        if old is None:
            try:
                self._watch.modify(fd, entry.events(), entry)
            except BaseException:
                if event == EVENT_READ:
                    entry.reader = None
                else:
                    entry.writer = None
                raise
        else:
            old.cancel()

    def _find_fd_entry(self, fileobj: PathOrFd) -> Optional[_FdCallbacks]:
        try:
            return self._fdcb.get(fileno_of(fileobj))
        except ValueError:
            # e.g. a socket object already closed (fileno() == -1): look it up by identity
            for entry in self._fdcb.values():
                if entry.fileobj is fileobj:
                    return entry
            return None

    def _remove_fd_callback(self, fileobj: PathOrFd, event: int) -> bool:
        if self._closed:
            return False
        entry = self._find_fd_entry(fileobj)
        if entry is None:
            return False
        h = entry.reader if event == EVENT_READ else entry.writer
        if h is None:
            return False
        h.cancel()
        if event == EVENT_READ:
            entry.reader = None
        else:
            entry.writer = None
        events = entry.events()
        if events:
            try:
                self._watch.modify(entry.fd, events, entry)
            except OSError:
                self._drop_fd_entry(entry, None)  # the fd is gone: the other callback cannot work either
        else:
            self._drop_fd_entry(entry, None)
        return True

    def _drop_fd_entry(self, entry: _FdCallbacks, why: Optional[str]) -> None:
        entry.drop()
        if self._fdcb.get(entry.fd) is entry:
            del self._fdcb[entry.fd]
        key = self._watch.get_key(entry.fd)
        if key is not None and key.data is entry:
            self._watch.unregister(entry.fd)
        if why is not None:
            self.call_exception_handler({"message": f"fd {entry.fd} {why}", "fd": entry.fd})

    def _fd_callback_failed(self, entry: _FdCallbacks, h: Handle, exc: BaseException) -> None:
        self._callback_failed(h, exc)
        if self._fdcb.get(entry.fd) is entry:
            try:
                os.fstat(entry.fd)
            except OSError as err:
                if err.errno == errno.EBADF:
                    self._drop_fd_entry(entry, "was closed while registered (EBADF); its callbacks were removed")

    def _on_stale_fd(self, key: Any) -> None:
        # FdWatch found that the fd was closed and reused behind our back;
        # the registration is already gone.
        data = key.data
        if isinstance(data, _FdCallbacks):
            if self._fdcb.get(data.fd) is data:
                del self._fdcb[data.fd]
            data.drop()
            self.call_exception_handler({
                "message": f"fd {data.fd} was closed and reused without remove_reader/remove_writer; "
                           "its old callbacks were dropped", "fd": data.fd})
            return
        lost = getattr(data, "_io_lost", None)
        if lost is not None:
            lost(OSError(errno.EBADF, f"fd {key.fd} was closed behind the reactor's back"))

    def _on_bad_fd(self, key: Any, exc: OSError) -> None:
        data = key.data
        if isinstance(data, _FdCallbacks):
            if self._fdcb.get(data.fd) is data:
                del self._fdcb[data.fd]
            data.drop()
            self.call_exception_handler({"message": f"fd {data.fd} was closed while registered; "
                                                    "its callbacks were removed", "exception": exc, "fd": data.fd})
            return
        lost = getattr(data, "_io_lost", None)
        if lost is not None:
            lost(exc)

    # -- signals ----------------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in the loop (not in signal context) each time ``sig`` arrives.

        Uses ``signal.set_wakeup_fd``, so it must be called from the main thread.
        """
        if self._closed:
            raise RuntimeError("Reactor is closed")
        if self._signals is None:
            from .signals import SignalRouter

            self._signals = SignalRouter(self)
        self._signals.add(sig, callback, args)

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore the default disposition of ``sig``; False if no handler was set."""
        if self._signals is None:
            return False
        return self._signals.remove(sig)

    # -- executors ----------------------------------------------------------------

    def set_default_executor(self, executor: Any) -> None:
        self._default_executor = executor

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any,
                        done: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run ``func(*args)`` in ``executor`` (None: a default thread pool); returns its
        ``concurrent.futures.Future``.  ``done(future)``, if given, is called on the loop thread."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        if executor is None:
            executor = self._default_executor
            if executor is None:
                from concurrent.futures import ThreadPoolExecutor

                executor = self._default_executor = ThreadPoolExecutor(thread_name_prefix="fastmux-reactor")
        fut = executor.submit(func, *args)
        if done is not None:
            fut.add_done_callback(_ExecutorDone(self, done))
        return fut

    # -- networking (the implementations live in their own modules) ------------------

    def create_server(self, protocol_factory: Callable[[], Any], host: Any = None, port: Optional[int] = None,
                      **kwargs: Any) -> Any:
        """Listen on ``host`` (a name, an address, a list of them, or None for all) and ``port``.

        See :func:`fastmux.reactor.servers.create_server` for the keyword arguments.
        """
        from .servers import create_server

        return create_server(self, protocol_factory, host, port, **kwargs)

    def create_unix_server(self, protocol_factory: Callable[[], Any], path: Any = None, **kwargs: Any) -> Any:
        """Listen on a Unix socket path; see :func:`fastmux.reactor.servers.create_unix_server`."""
        from .servers import create_unix_server

        return create_unix_server(self, protocol_factory, path, **kwargs)

    def create_connection(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None,
                          **kwargs: Any) -> Tuple[Any, Any]:
        """Start connecting; returns ``(transport, protocol)`` at once.

        See :func:`fastmux.reactor.connect.create_connection`.
        """
        from .connect import create_connection

        return create_connection(self, protocol_factory, host, port, **kwargs)

    def create_unix_connection(self, protocol_factory: Callable[[], Any], path: Any = None,
                               **kwargs: Any) -> Tuple[Any, Any]:
        from .connect import create_unix_connection

        return create_unix_connection(self, protocol_factory, path, **kwargs)

    def create_datagram_endpoint(self, protocol_factory: Callable[[], Any], local_addr: Any = None,
                                 remote_addr: Any = None, **kwargs: Any) -> Tuple[Any, Any]:
        """A UDP (or Unix datagram) endpoint; see :func:`fastmux.reactor.datagram.create_datagram_endpoint`."""
        from .datagram import create_datagram_endpoint

        return create_datagram_endpoint(self, protocol_factory, local_addr, remote_addr, **kwargs)

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Release everything: servers stop, transports are aborted (their protocols
        get ``connection_lost(None)`` now), pending callbacks are dropped, signal
        handlers and the wake-up fd are released.  Idempotent; not while running."""
        if self._running:
            raise RuntimeError("Cannot close a running Reactor")
        if self._closed:
            return
        for server in list(self._servers):
            server.close()
        for owner in list(self._owners.values()):
            try:
                owner._close_now()
            except Exception as exc:
                self.call_exception_handler({"message": f"Error closing {owner!r}", "exception": exc})
        self._closed = True
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        for entry in list(self._fdcb.values()):
            entry.drop()
        self._fdcb.clear()
        self._ready.clear()
        for entry in self._timers:
            entry[2]._scheduled = False
        self._timers.clear()
        self._requeue = []
        self._waker.close()
        self._watch.close()
        executor = self._default_executor
        self._default_executor = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "Reactor":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:  # one argument: compiled, this is the type's tp_finalize
        if not getattr(self, "_closed", True):
            _warn(f"unclosed reactor {self!r}", ResourceWarning, source=self)
            if not self._running:
                self.close()


def _noop() -> None:
    pass


class _ExecutorDone:
    """Moves an executor future's completion onto the loop thread."""

    __slots__ = ("loop", "done")

    def __init__(self, loop: Reactor, done: Callable[[Any], Any]) -> None:
        self.loop = loop
        self.done = done

    def __call__(self, fut: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.done, fut)
        except RuntimeError:
            pass  # the reactor was closed first: nobody is listening


class _FileChunk:
    """A queued ``sendfile``: the transport's own dup of the fd, a range."""

    __slots__ = ("fd", "offset", "remaining", "owned", "copy")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.remaining = count
        self.owned = False
        self.copy = not _sigpipe_ignored()  # os.sendfile cannot say MSG_NOSIGNAL

    def close(self) -> None:
        if self.owned:
            self.owned = False
            os.close(self.fd)


class StreamTransport:
    """A TCP or Unix stream connection (level-triggered; see ``_EdgeStreamTransport``).

    The asyncio transport shape: ``write``, ``writelines``, ``sendfile``,
    ``write_eof``, ``close`` (flushes first), ``abort``, ``pause_reading`` /
    ``resume_reading``, write-buffer limits, ``get_extra_info``.
    """

    __slots__ = (
        "_loop", "_watch", "_sock", "_fd", "_protocol", "_data_received", "_server", "_extra", "_peer",
        "_events", "_reading", "_read_closed", "_closing", "_conn_lost", "_eof_written", "_connecting",
        "_connector", "_made", "_wopen", "_wq", "_wsize", "_high", "_low", "_proto_paused", "_sock_gone",
        "_io_requeued", "_lost_handle", "max_read_size", "__weakref__",
    )

    def __init__(self, loop: Reactor, protocol: Any, sock: Optional[socket.socket] = None, *,
                 server: Any = None, peer: Any = None) -> None:
        self._loop = loop
        self._watch = loop._watch
        self._protocol = protocol
        self._data_received: Any = None
        self._server = server
        self._extra: Optional[Dict[str, Any]] = None
        self._peer = peer
        self._sock: Optional[socket.socket] = None
        self._fd = -1
        self._events = 0
        self._reading = True
        self._read_closed = False
        self._closing = False
        self._conn_lost = False
        self._eof_written = False
        self._connecting = True
        self._wopen = False  # write() may send at once: attached, no EOF written, not lost
        self._connector: Any = None
        self._made = False
        self._wq: Deque[Any] = collections.deque()
        self._wsize = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._proto_paused = False
        self._sock_gone = False
        self._io_requeued = False
        self._lost_handle: Optional[Handle] = None
        self.max_read_size = MAX_READ  # bytes asked of one recv; per transport, read at creation
        if sock is not None:
            self._attach(sock)

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else (
            "connecting" if self._connecting else "open"))
        return f"<{type(self).__name__} fd={self._fd} {state} buffered={self._wsize}>"

    # -- lifecycle -----------------------------------------------------------------

    def _attach(self, sock: socket.socket) -> None:
        """Take a connected, non-blocking socket (``_connection_made`` starts it)."""
        self._sock = sock
        self._fd = fd = sock.fileno()
        self._connecting = False
        self._wopen = not self._eof_written
        self._connector = None
        self._loop._owners[fd] = self

    def _connection_made(self) -> None:
        if self._conn_lost:
            return
        self._made = True
        protocol = self._protocol
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
            return
        if self._conn_lost:
            return
        self._data_received = self._protocol.data_received  # looked up once, after connection_made
        if self._wq:  # written before the connection was up
            self._write_ready()
        elif self._eof_written:  # write_eof() before the connection was up
            self._shutdown_write()
        if not self._conn_lost:
            self._update()

    def _update(self) -> None:
        """Level-triggered: make the selector's interest match what we want."""
        if self._conn_lost or self._sock is None:
            return
        ev = 0
        if self._reading and not self._read_closed and not self._closing:
            ev = EVENT_READ
        if self._wq:
            ev |= EVENT_WRITE
        old = self._events
        if ev == old:
            return
        self._events = ev
        try:
            if old == 0:
                self._watch.register(self._fd, ev, self)
            elif ev == 0:
                self._watch.unregister(self._fd)
            else:
                self._watch.modify(self._fd, ev, self)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc, "registering with the selector")

    # -- the hot path ----------------------------------------------------------------

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ and self._events & EVENT_READ:
            # the per-request path: one recv, straight to the protocol
            if cython.compiled:
                # recv(2) itself; None: EAGAIN, or failed and already reported
                # (no try block here: entering one costs on every request)
                data = _sock_recv(self, self.max_read_size)
            else:
                try:
                    data = self._sock.recv(self.max_read_size)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as exc:
                    self._fatal_error(exc, "recv")
                    return
            if data:
                try:
                    self._data_received(data)
                except Exception as exc:
                    self._protocol_failed(exc, "data_received")
            elif data is not None:
                self._eof()
        if mask & EVENT_WRITE and self._wq:
            self._write_ready()

    def write(self, data: Any) -> None:
        """Send ``data`` now if the socket takes it; queue the rest."""
        if self._wopen and not self._wq and type(data) is bytes:  # compiled: a pointer compare
            # the per-request path: nothing queued, so try the socket at once
            if cython.compiled:
                n = _sock_send(self, data)  # send(2) itself; 0: EAGAIN; -1: failed, reported
                if n < 0:
                    return
            else:
                try:
                    n = self._sock.send(data, MSG_NOSIGNAL)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self._fatal_error(exc, "send")
                    return
            if n == len(data):
                return
            if n:
                data = memoryview(data)[n:]
            self._wq.append(data)
            self._wsize += len(data)
            self._update()
            if self._wsize > self._high and not self._proto_paused:
                self._pause_protocol()
            return
        self._write_slow(data)

    def _write_slow(self, data: Any) -> None:
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._conn_lost or not data:
            return
        if self._wopen and not self._wq:
            self.write(data)  # a bytes copy of a bytearray/memoryview: the fast path
            return
        self._wq.append(data)
        self._wsize += len(data)
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write several buffers; sent in one ``sendmsg`` gather when possible."""
        if self._eof_written:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        if self._conn_lost:
            return
        items = [d if d.__class__ is bytes else _as_bytes(d) for d in list_of_data]
        items = [d for d in items if d]
        if not items:
            return
        if len(items) == 1:
            self.write(items[0])
            return
        wq = self._wq
        was_empty = not wq
        for d in items:
            wq.append(d)
            self._wsize += len(d)
        if was_empty and not self._connecting:
            try:
                self._flush()
            except OSError as exc:
                self._fatal_error(exc, "sendmsg")
                return
            if wq:
                self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def _flush(self) -> None:
        """Send queued items until the queue is empty or the socket is full.

        Raises OSError for real errors.  Level-triggered: stops at a short
        write (the kernel will say when there is room).  Edge-triggered:
        stops only at EAGAIN, the one condition that guarantees another edge.
        """
        wq = self._wq
        sock = self._sock
        edge = self._loop._edge
        while wq:
            head = wq[0]
            if head.__class__ is _FileChunk:
                if not self._send_chunk(head):
                    return
                wq.popleft()
                head.close()
                continue
            if len(wq) == 1 or wq[1].__class__ is _FileChunk:
                total = len(head)
                try:
                    n = sock.send(head, MSG_NOSIGNAL | (MSG_MORE if len(wq) > 1 else 0))  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
            else:
                bufs = []
                total = 0
                for item in wq:
                    if item.__class__ is _FileChunk or len(bufs) >= IOV_MAX:
                        break
                    bufs.append(item)
                    total += len(item)
                try:
                    n = sock.sendmsg(bufs, (), MSG_NOSIGNAL)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
            self._wsize -= n
            left = n
            while left:
                item = wq[0]
                size = len(item)
                if left >= size:
                    wq.popleft()
                    left -= size
                else:
                    wq[0] = memoryview(item)[left:]
                    left = 0
            if n < total and not edge:
                return

    def _send_chunk(self, chunk: _FileChunk) -> bool:
        """Send a queued file range; True when it is done, False when the socket is full."""
        sock = self._sock
        while chunk.remaining > 0:
            try:
                if chunk.copy:
                    data = os.pread(chunk.fd, min(chunk.remaining, MAX_READ), chunk.offset)
                    if not data:
                        self._push_held()  # the file ended early
                        break
                    n = sock.send(data, MSG_NOSIGNAL)  # type: ignore[union-attr]
                else:
                    n = os.sendfile(self._fd, chunk.fd, chunk.offset, min(chunk.remaining, SENDFILE_MAX))
                    if n == 0:
                        self._push_held()  # the file ended early
                        break
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if not chunk.copy and exc.errno in SENDFILE_FALLBACK_ERRNOS:
                    chunk.copy = True  # this (file, socket) pair cannot sendfile
                    continue
                raise
            chunk.offset += n
            chunk.remaining -= n
        chunk.remaining = 0
        return True

    def _push_held(self) -> None:
        """Send what a MSG_MORE send held back for a file that then came up
        short: uncorking a TCP socket pushes its pending frames."""
        sock = self._sock
        if MSG_MORE and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def _write_ready(self) -> None:
        try:
            self._flush()
        except OSError as exc:
            self._fatal_error(exc, "send")
            return
        if self._proto_paused and self._wsize <= self._low:
            self._resume_protocol()
        if not self._wq and not self._conn_lost:
            if self._closing:
                self._force_close(None)
                return
            if self._eof_written:
                self._shutdown_write()
            self._update()

    def _eof(self) -> None:
        self._read_closed = True
        self._update()  # level-triggered: EOF stays readable forever, stop watching
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_failed(exc, "eof_received")
            return
        if not keep_open:
            self.close()

    # -- the rest of the transport API -------------------------------------------------

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None, *, head: bytes = b"") -> None:
        """Queue ``count`` bytes (default: to the end) of ``file`` from ``offset``, zero-copy.

        ``file`` is an object with fileno() or an fd; its position is not
        used or changed.  Ordered with ``write``: bytes written before are
        sent before, bytes written after are sent after.  What cannot go at
        once is sent from the transport's own ``dup`` of the fd, so the
        caller may close ``file`` as soon as this returns.  Pending file
        bytes do not count in ``get_write_buffer_size`` (they are not in
        memory).  ``head`` (a response head, say) is written just before
        the file, as ``write(head)`` would, but shares its first segment.
        """
        if self._eof_written:
            raise RuntimeError("Cannot call sendfile() after write_eof()")
        if self._conn_lost:
            return
        fd = fileno_of(file)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count <= 0:
            if head:
                self.write(head)
            return
        if head.__class__ is not bytes:
            head = _as_bytes(head)
        wq = self._wq
        idle = not wq and not self._connecting
        if head:
            wq.append(head)
            self._wsize += len(head)
        chunk = _FileChunk(fd, offset, count)
        wq.append(chunk)
        if idle:
            try:
                self._flush()  # the head "more to follow", then the file
            except OSError as exc:
                self._fatal_error(exc, "sendfile")
                return
        if chunk.remaining:  # still queued: the caller may close its fd now
            chunk.fd = os.dup(fd)
            chunk.owned = True
        if wq:
            self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def write_eof(self) -> None:
        """Shut down the sending side once the queue is flushed (the peer sees EOF)."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._wopen = False
        if not self._wq and not self._connecting:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(_SHUT_WR)  # type: ignore[union-attr]
        except OSError as exc:
            self._fatal_error(exc, "shutdown")

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        """Stop reading, flush what is queued, then close; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        if self._connecting:
            self._abandon_connect(ConnectionAbortedError("transport closed before it connected"))
            return
        self._update()
        if not self._wq:
            self._force_close(None)

    def abort(self) -> None:
        """Close now, dropping what is queued; ``connection_lost(None)`` follows."""
        if self._connecting and not self._conn_lost:
            self._closing = True
            self._abandon_connect(ConnectionAbortedError("transport aborted before it connected"))
            return
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""
        if self._closing or not self._reading:
            return
        self._reading = False
        self._update()

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._update()

    def is_reading(self) -> bool:
        return self._reading and not self._closing and not self._read_closed

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Set the marks for ``pause_writing`` (above ``high``) and ``resume_writing`` (at ``low``)."""
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        if self._wsize > high and not self._proto_paused:
            self._pause_protocol()
        elif self._proto_paused and self._wsize <= low:
            self._resume_protocol()

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        """Bytes queued in memory (pending ``sendfile`` ranges are not counted)."""
        return self._wsize

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        if self._made:
            self._data_received = protocol.data_received

    def get_protocol(self) -> Any:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'``, ``'sockname'``, ``'socket'`` (the socket itself: do not close it)."""
        extra = self._extra
        if extra is not None and name in extra:
            return extra[name]
        sock = self._sock
        if sock is None:
            return default
        if name == "socket":
            return sock
        try:
            if name == "peername":
                value = self._peer if self._peer is not None else sock.getpeername()
            elif name == "sockname":
                value = sock.getsockname()
            else:
                return default
        except OSError:
            return default
        if extra is None:
            extra = self._extra = {}
        extra[name] = value
        return value

    # -- flow control and errors -------------------------------------------------------

    def _pause_protocol(self) -> None:
        self._proto_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._loop.call_exception_handler({"message": "protocol.pause_writing() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    def _resume_protocol(self) -> None:
        self._proto_paused = False
        try:
            self._protocol.resume_writing()
        except Exception as exc:
            self._loop.call_exception_handler({"message": "protocol.resume_writing() failed", "exception": exc,
                                               "transport": self, "protocol": self._protocol})

    def _fatal_error(self, exc: BaseException, where: str) -> None:
        if is_quiet(exc):
            logger.debug("%r: %s failed: %r", self, where, exc)
        else:
            self._loop.call_exception_handler({"message": f"Fatal error on transport ({where})", "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _protocol_failed(self, exc: BaseException, method: str) -> None:
        self._loop.call_exception_handler({"message": f"protocol.{method}() failed; aborting the connection",
                                           "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _io_lost(self, exc: OSError) -> None:
        """The fd was closed behind our back: forget the registration, never close the number."""
        self._events = 0
        self._sock_gone = True
        self._fatal_error(exc, "fd lost")

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._conn_lost:
            return
        self._conn_lost = True
        self._wopen = False
        self._closing = True
        self._discard_queue()
        if self._events:
            self._events = 0
            self._watch.unregister(self._fd)
        h = self._lost_handle = Handle(self._call_connection_lost, (exc,))
        self._loop._ready.append(h)

    def _discard_queue(self) -> None:
        wq = self._wq
        while wq:
            item = wq.popleft()
            if item.__class__ is _FileChunk:
                item.close()
        self._wsize = 0

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        self._lost_handle = None
        try:
            if self._made:
                self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        sock = self._sock
        if sock is not None:
            owners = self._loop._owners
            if owners.get(self._fd) is self:
                del owners[self._fd]
            if self._sock_gone:
                sock.detach()
            else:
                sock.close()
        server = self._server
        self._server = None
        if server is not None:
            server._detach(self)
        self._protocol = None
        self._data_received = None

    def _close_now(self) -> None:
        """Reactor.close(): abort and run connection_lost at once."""
        if self._connecting and not self._conn_lost:
            connector = self._connector
            self._conn_lost = self._closing = True
            self._connecting = self._wopen = False
            self._discard_queue()
            if connector is not None:
                connector.cancel()
            return
        if not self._conn_lost:
            self._force_close(None)
        h = self._lost_handle  # run our pending connection_lost now: the loop will not run again
        if h is not None and not h._cancelled:
            args = h._args
            h.cancel()
            try:
                self._call_connection_lost(*args)  # type: ignore[misc]
            except Exception as err:
                self._loop.call_exception_handler({"message": "connection_lost() failed during close",
                                                   "exception": err, "transport": self})

    # -- connecting (driven by connect._Connector) ---------------------------------------

    def _abandon_connect(self, exc: BaseException) -> None:
        connector = self._connector
        if connector is not None:
            connector.cancel()
        self._connect_failed(exc)

    def _connect_failed(self, exc: BaseException) -> None:
        if not self._connecting:
            return
        self._connecting = self._wopen = False
        self._connector = None
        self._conn_lost = True
        self._closing = True
        self._discard_queue()
        loop = self._loop
        callback = getattr(self._protocol, "connection_failed", None)
        if callback is not None:
            loop._ready.append(Handle(callback, (exc,)))
        else:
            loop._ready.append(Handle(loop.call_exception_handler, ({
                "message": "connection failed (the protocol has no connection_failed() to tell)",
                "exception": exc, "transport": self, "protocol": self._protocol},)))


class _EdgeStreamTransport(StreamTransport):
    """Edge-triggered: registered once with EPOLLIN|EPOLLOUT|EPOLLET; drains under a budget."""

    __slots__ = ()

    def _update(self) -> None:
        # Interest is tracked in Python: the only epoll_ctl is the first one.
        if self._events or self._conn_lost or self._sock is None:
            return
        self._events = EVENT_READ | EVENT_WRITE
        try:
            self._watch.register(self._fd, EVENT_READ | EVENT_WRITE, self, EPOLLET)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc, "registering with the selector")

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ and not self._io_requeued:
            self._drain()
        if mask & EVENT_WRITE and self._wq:
            self._write_ready()

    def _io_retry(self) -> None:
        self._io_requeued = False
        if not self._conn_lost:
            self._drain()

    def _drain(self) -> None:
        budget = READ_BUDGET
        sock = self._sock
        size = self.max_read_size
        while self._reading and not self._read_closed and not self._closing:
            if not budget:
                self._loop._requeue_io(self)  # the kernel will not tell us again
                return
            budget -= 1
            if cython.compiled:
                data = _sock_recv(self, size)
                if data is None:
                    return  # EAGAIN: drained (or failed and reported)
            else:
                try:
                    data = sock.recv(size)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    self._fatal_error(exc, "recv")
                    return
            if not data:
                self._eof()
                return
            try:
                self._data_received(data)
            except Exception as exc:
                self._protocol_failed(exc, "data_received")
                return

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        if not self._read_closed and self._made:
            # the edge that came while we were paused is gone: look ourselves
            self._loop._requeue_io(self)
