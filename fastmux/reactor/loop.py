"""The reactor's loop: :class:`Reactor` and its iteration.

An event goes ``FdWatch.wait`` (``_fdwatch``) -> the dispatch here
(``key.data._on_io(mask)``) -> the fd's owner: a stream transport
(``stream``: ``recv -> protocol.data_received -> write -> send``), a
datagram transport (``datagram``), a listener (``servers``), a connector
(``connect``) or an ``add_reader``/``add_writer`` entry (``_fdcallbacks``).
Keep the compiled modules of that path plain Python that Cython compiles:
no metaprogramming, no closures on the hot path.

The compiled twin
-----------------

Compiled into ``_loop_c`` (typed by ``src/fastmux/reactor/_loop_c.pxd``;
how the twins find their siblings: ``fastmux.reactor``), ``Reactor`` is an
extension type with C attributes and ``_run_once`` a C method.  The twins
differ in ``if cython.compiled:`` branches: the imports of sibling modules
(those of ``stream`` and ``datagram`` are made where first needed: the
compiled transports' base, ``_transport_c``, cimports ``Reactor`` from this
module, which must therefore be able to finish importing first), and the
dispatch, which calls the ``_on_io`` of a transport (any
``BaseTransport``) as a C method.

How one iteration goes (``Reactor._run_once``)
----------------------------------------------

1. Wait: not at all if callbacks are ready, work was re-queued (below) or
   ``stop()`` was called; until the earliest timer; or forever.
   ``FdWatch.wait`` turns the deadline into a kernel timeout without ever
   rounding down (no spinning) and finishes sub-millisecond waits with
   microsecond precision (see ``_fdwatch``).
2. The callbacks that were ready before the wait (``call_soon``,
   ``call_soon_threadsafe``, signal handlers, connection_lost...), each in
   its handle's ``contextvars.Context`` when it has one.  They run before
   the I/O the wait found, as in asyncio: a task started before a datagram
   arrives is waiting for it when it is delivered.
3. Dispatch: every ready selector key's ``data`` *is* the object that owns
   the fd (a transport, a listening socket, an add_reader entry, the
   wake-up fd), and the loop calls ``data._on_io(mask)`` directly.  There is
   no Handle, no ready-queue round trip and no allocation per event.
4. Re-queued work from the previous iteration (edge-triggered drains that
   ran out of budget, ``resume_reading`` in edge mode).
5. The timers whose deadline has passed, in deadline order, then
   scheduling order.
6. The callbacks that steps 2-5 scheduled (a task woken by the data that
   just arrived), unless ``stop()`` was called.  asyncio would run them
   after another wait, with a zero timeout, before any I/O that wait
   finds: running them now keeps that order and saves the wait.

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
  unregister before closing.  For ``add_reader`` fds the loop remembers the
  file's identity and checks it when a callback is added or raises
  (``_fdcallbacks``).  Under ``select`` a closed fd fails the whole call
  with EBADF: ``FdWatch`` finds it and hands its owner the error.  Owners
  whose fd was lost this way ``detach()`` their socket object instead of
  closing it: the number may already belong to someone else.
* **EPOLLEXCLUSIVE** is used for listening sockets when available (several
  processes sharing one inherited socket wake one at a time).  Since it
  cannot be modified, pausing a listener unregisters it and resuming
  registers it again.
* **HUP and ERR wake readers and writers**: the selector reports them as
  both EVENT_READ and EVENT_WRITE, and each path meets the error in its own
  syscall.
* **Regular files** registered with ``add_reader``/``add_writer`` are
  always ready (what ``select`` says) instead of failing: see ``_fdwatch``.
"""
from __future__ import annotations

import collections
import errno
import heapq
import logging
import threading
import time
import warnings
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

if cython.compiled:  # the compiled twin's siblings; _loop_c.pxd cimports FdWatch and BaseTransport
    from ._fdcallbacks_c import FdCallbacks
    from ._fdwatch_c import EVENT_READ, EVENT_WRITE, Waker
else:
    from ._fdcallbacks import FdCallbacks
    from ._fdwatch import EVENT_READ, EVENT_WRITE, FdWatch, Waker
if not cython.compiled:  # compiled, _loop_c.pxd cimports them from _handles_c
    from .handles import Handle, TimerHandle

__all__ = ["Reactor"]

logger = logging.getLogger("fastmux.reactor")

TIMER_PURGE_MIN = 100  # purge cancelled timers once there are this many...
# ...and they are more than half of the heap

_monotonic = time.monotonic
_warn = warnings.warn  # kept for __del__ at interpreter shutdown
_heappush = heapq.heappush
_heappop = heapq.heappop

PathOrFd = Union[int, Any]


class _WakeupReader:
    """Drains the wake-up fd, *then* clears the loop's 'a wake-up is pending' flag.

    In that order: a thread that finds the flag clear writes a wake-up that no
    drain of this call can consume, so the flag is never left set with the fd
    empty (clearing first let a wake-up written between the clear and the
    read be swallowed, after which no thread ever woke the loop again).  A
    callback appended between the drain and the clear wrote nothing, but it
    is already in ``_ready``, which this same iteration runs (step 6).
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
        if cython.compiled:
            from ._stream_c import StreamTransport, _EdgeStreamTransport
        else:
            from .stream import StreamTransport, _EdgeStreamTransport
        self._stream_cls = _EdgeStreamTransport if self._edge else StreamTransport
        self._ready: Deque[Handle] = collections.deque()
        self._timers: List[Tuple[float, int, TimerHandle]] = []
        self._timer_seq = 0  # ties between equal deadlines go to the earlier call_at
        self._cancelled_timers = 0
        self._requeue: List[Any] = []
        self._fdcb = FdCallbacks(self, self._watch)
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
        self._wake_up()
        return h

    def _wake_up(self) -> None:
        """Interrupt a wait from another thread (or a signal handler)."""
        # One wake-up per batch: the flag is cleared by the loop *after* it
        # drains the wake-up fd, so a callback appended after the clear
        # always writes a fresh wake-up that nothing has consumed yet
        # (deque.append and attribute stores are atomic under the GIL; see
        # _WakeupReader).
        if not self._wake_pending:
            self._wake_pending = True
            self._waker.wake()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds (sub-millisecond delays are honoured)."""
        return self.call_at(_monotonic() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at ``when`` on the ``time()`` clock."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        h = TimerHandle(when, callback, args, self)
        self._schedule(h)
        return h

    def _schedule(self, h: TimerHandle) -> None:
        seq = self._timer_seq
        self._timer_seq = seq + 1
        _heappush(self._timers, (h._when, seq, h))

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

        early = len(ready)  # scheduled before this iteration: step 2 runs them

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

        # 2. the callbacks that were ready before the wait
        if early:
            self._run_ready(early)

        # 3. dispatch: [owner, events, owner, events, ...], each ready fd's
        # registration data owns it (no selector key touched per event)
        if events:
            try:
                n = len(events)
                i = 0
                if cython.compiled:
                    # A transport's _on_io is then a C call (typed in _loop_c.pxd).
                    stream_cls = self._stream_cls
                    while i < n:
                        owner = events[i]
                        mask = events[i + 1]
                        i += 2
                        try:
                            # Most owners are this loop's stream transports: their exact
                            # type first, as isinstance walks the MRO to the base.
                            if type(owner) is stream_cls or isinstance(owner, BaseTransport):
                                transport = cython.cast(BaseTransport, owner)
                                transport._on_io(mask)
                            else:
                                owner._on_io(mask)
                        except Exception as exc:
                            self._owner_failed(owner, exc)
                else:
                    while i < n:
                        owner = events[i]
                        try:
                            owner._on_io(events[i + 1])
                        except Exception as exc:
                            self._owner_failed(owner, exc)
                        i += 2
            except BaseException:
                if self._edge:
                    if requeued:
                        self._requeue.extend(requeued)  # not retried yet; their flags are still set
                    self._requeue_all(events)
                raise

        # 4. edge-triggered work that ran out of budget last iteration
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
                self._run_handle(h)

        # 6. what steps 2-5 scheduled, now rather than after another wait
        # (unless stop() was called: those then wait for the next run)
        if ready and not self._stopping:
            self._run_ready(len(ready))

    def _run_ready(self, ntodo: int) -> None:
        ready = self._ready
        while ntodo:
            ntodo -= 1
            h = ready.popleft()
            if not h._cancelled:
                self._run_handle(h)

    def _run_handle(self, h: Any) -> None:
        """Run ``h``'s callback, in its context if it has one; report what it raises.

        ``h`` is one of ours or an ``asyncio.Handle`` (the asyncio face puts
        those here too): the compiled twin reads ours in C and enters the
        context with the C API instead of ``Context.run``'s argument tuple.
        """
        if cython.compiled and type(h) is Handle:
            ours = cython.cast(Handle, h)
            callback = ours._callback
            args = ours._args
            ctx = ours._context
        else:
            callback = h._callback
            args = h._args
            ctx = h._context
        try:
            if ctx is None:
                callback(*args)
            elif cython.compiled:
                _call_in_context(ctx, callback, args)
            else:
                ctx.run(callback, *args)
        except BaseException as exc:
            if self._callback_failed(h, exc):
                raise

    def _requeue_io(self, obj: Any) -> None:
        """Have ``obj._io_retry()`` called next iteration (edge-triggered: the kernel will not remind us)."""
        if not obj._io_requeued:
            obj._io_requeued = True
            self._requeue.append(obj)

    def _requeue_all(self, events: Any) -> None:
        for owner in events[::2]:
            if getattr(owner, "_io_retry", None) is not None:
                self._requeue_io(owner)

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

    def _callback_failed(self, h: Any, exc: BaseException) -> bool:
        """Report what callback ``h`` raised; True when ``exc`` must propagate instead
        (here: anything but an ``Exception``; the asyncio face lets only
        SystemExit and KeyboardInterrupt through, as asyncio does)."""
        if not isinstance(exc, Exception):
            return True
        self.call_exception_handler({"message": f"Exception in callback {h._describe()}",
                                     "exception": exc, "handle": h})
        return False

    def _owner_failed(self, owner: Any, exc: BaseException) -> None:
        self.call_exception_handler({"message": f"Exception while handling I/O on {owner!r}",
                                     "exception": exc, "owner": owner})

    # -- add_reader / add_writer --------------------------------------------------

    def add_reader(self, fd: PathOrFd, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` (a number or an object with fileno()) is readable.

        Level-triggered in every mode.  A regular file is always readable.
        """
        if self._closed:
            raise RuntimeError("Reactor is closed")
        self._fdcb.add(fd, EVENT_READ, Handle(callback, args))

    def add_writer(self, fd: PathOrFd, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        if self._closed:
            raise RuntimeError("Reactor is closed")
        self._fdcb.add(fd, EVENT_WRITE, Handle(callback, args))

    def remove_reader(self, fd: PathOrFd) -> bool:
        """Stop watching ``fd`` for reading; False if it was not watched."""
        return not self._closed and self._fdcb.remove(fd, EVENT_READ)

    def remove_writer(self, fd: PathOrFd) -> bool:
        """Stop watching ``fd`` for writing; False if it was not watched."""
        return not self._closed and self._fdcb.remove(fd, EVENT_WRITE)

    def _socket_extra(self, sock: Any) -> Any:
        """What a transport's ``get_extra_info("socket")`` returns: the socket itself."""
        return sock

    # -- fds closed behind our back (found by FdWatch, which already dropped the registration) --

    def _on_stale_fd(self, key: Any) -> None:
        # the number was closed and now names another file
        if not self._fdcb.lost(key, None):
            self._owner_lost(key, OSError(errno.EBADF, f"fd {key.fd} was closed behind the reactor's back"))

    def _on_bad_fd(self, key: Any, exc: OSError) -> None:
        if not self._fdcb.lost(key, exc):
            self._owner_lost(key, exc)

    def _owner_lost(self, key: Any, exc: OSError) -> None:
        lost = getattr(key.data, "_io_lost", None)
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
        if cython.compiled:
            from ._datagram_c import create_datagram_endpoint
        else:
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

