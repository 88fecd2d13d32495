"""The compiled part of the asyncio face: what asyncio calls on every wake-up.

asyncio's futures and tasks (C code in ``_asyncio``) schedule every step of
every task with ``loop.call_soon(callback, arg, context=ctx)`` and ask
``loop.get_debug()`` for every new future (which streams make with
``loop.create_future()`` for every wait), and servers make a task per
connection or request with ``loop.create_task()``; :class:`AsyncioCore` gives them
the Reactor's own ready queue and timer heap with asyncio's rules on top:

* every callback runs in a ``contextvars.Context`` (the one given, else a
  copy of the caller's, as ``asyncio.Handle`` does);
* a closed loop says "Event loop is closed"; debug mode checks the calling
  thread and refuses coroutines as callbacks (the stdlib's own
  ``_check_thread``/``_check_callback``, which ``aioloop.EventLoop``
  inherits) and hands out asyncio's own handles, which record where they
  were created (``_source_traceback``, shown when their callback fails);
* a callback's exception goes to the exception handler unless it is
  SystemExit or KeyboardInterrupt (asyncio's ``Handle._run``), so a
  ``CancelledError`` escaping a callback is reported, not raised out of
  ``run_forever``;
* ``create_task`` is the running interpreter's ``BaseEventLoop.create_task``
  where that has the form of 3.9 to 3.13.2 (``name``, and ``context`` from
  3.11), but makes its ``tasks.Task`` without a Python frame.  With a task
  factory set (``asyncio.eager_task_factory`` included) asyncio's own method
  does the work, since how it calls the factory and names the task differs
  between versions; so it does on the versions whose method takes
  ``**kwargs`` (3.13.3 on), whose task factory contract changed again
  between patch releases.

Compiled into ``_aiocore_c`` (typed by ``src/fastmux/reactor/_aiocore_c.pxd``),
``AsyncioCore`` is an extension type on the compiled ``Reactor``, so these
methods are C functions that read the loop's fields directly.  The rest of
the asyncio API lives in plain Python in ``aioloop``.
"""
from __future__ import annotations

import inspect
import time
from asyncio import base_events, events, futures, tasks
from contextvars import Context, copy_context
from typing import Any, Callable, Optional, Tuple

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

if not cython.compiled:  # compiled, _aiocore_c.pxd cimports Reactor
    from .loop import Reactor
if cython.compiled:  # the compiled handles, which the loop reads in C
    from ._handles_c import Handle, TimerHandle
else:
    from .handles import Handle, TimerHandle

__all__ = ["AsyncioCore"]

_monotonic = time.monotonic
_CLOSED = "Event loop is closed"
_Future = futures.Future
_THIS_FILE = __file__

_asyncio_create_task = base_events.BaseEventLoop.create_task
# asyncio.tasks.Task is read on each call, as asyncio reads it (tracers replace it), but
# from the module's dict: a dict lookup, not a module attribute lookup.
_tasks_namespace = vars(tasks)
# The forms of asyncio's create_task mirrored here: 3.9 and 3.10 take a name, 3.11 to
# 3.13.2 a context too; a later one (with **kwargs) is left to asyncio.
_CREATE_TASK_FORM = tuple(inspect.signature(_asyncio_create_task).parameters)
_CREATE_TASK_NAMED = _CREATE_TASK_FORM == ("self", "coro", "name")
_CREATE_TASK_WITH_CONTEXT = _CREATE_TASK_FORM == ("self", "coro", "name", "context")


def _from_caller(h: Any) -> Any:
    """``h``, an asyncio handle or task, with this module's frames cut from the end of
    its ``_source_traceback`` (made in debug mode only; asyncio cuts its own loop's),
    so that it says where the caller scheduled it.  Compiled, this module runs in no
    frame."""
    tb = h._source_traceback
    while tb and tb[-1].filename == _THIS_FILE:
        del tb[-1]
    return h


class AsyncioCore(Reactor):
    """The Reactor with asyncio's scheduling rules (see the module docstring)."""

    def __init__(self, backend: Optional[str] = None, *, selector: Any = None) -> None:
        self._debug = False
        self._task_factory = None  # asyncio's BaseEventLoop.__init__ sets it again
        Reactor.__init__(self, backend, selector=selector)

    def get_debug(self) -> bool:
        return self._debug

    def create_future(self) -> futures.Future:
        return _Future(loop=self)

    if _CREATE_TASK_WITH_CONTEXT:
        def create_task(self, coro: Any, *, name: Optional[str] = None,
                        context: Optional[Context] = None) -> Any:
            if self._task_factory is None:
                return self._new_task(coro, name, context)
            return _asyncio_create_task(self, coro, name=name, context=context)
    elif _CREATE_TASK_NAMED:
        def create_task(self, coro: Any, *, name: Optional[str] = None) -> Any:  # type: ignore[misc]
            if self._task_factory is None:
                return self._new_task(coro, name, None)
            return _asyncio_create_task(self, coro, name=name)

    def _new_task(self, coro: Any, name: Optional[str], context: Optional[Context]) -> Any:
        """asyncio's create_task without a task factory: ``tasks.Task`` (looked up on
        every call, as asyncio does), its debug traceback ending at the caller."""
        if self._closed:
            raise RuntimeError(_CLOSED)
        task_cls = _tasks_namespace["Task"]
        if context is None:  # Task's own default; 3.9 and 3.10's Task takes no context
            task = task_cls(coro, loop=self, name=name)
        else:
            task = task_cls(coro, loop=self, name=name, context=context)
        if self._debug:  # else the task has no traceback to cut
            _from_caller(task)
        return task

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Optional[Context] = None) -> Handle:
        return self._enqueue(callback, args, context, "call_soon")

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,
                             context: Optional[Context] = None) -> Handle:
        h = self._enqueue(callback, args, context, "call_soon_threadsafe")
        self._wake_up()
        return h

    def _enqueue(self, callback: Callable[..., Any], args: Tuple[Any, ...], context: Optional[Context],
                 method: str) -> Any:
        """A handle for ``callback(*args)``, on the ready queue."""
        if self._closed:
            raise RuntimeError(_CLOSED)
        if self._debug:
            if method == "call_soon":  # call_soon_threadsafe may come from any thread
                self._check_thread()
            self._check_callback(callback, method)
            h = _from_caller(events.Handle(callback, args, self, context))
        else:
            h = Handle(callback, args, copy_context() if context is None else context)
        self._ready.append(h)
        return h

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: Optional[Context] = None) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return self.call_at(_monotonic() + delay, callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Optional[Context] = None) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError(_CLOSED)
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            h = _from_caller(events.TimerHandle(when, callback, args, self, context))
            h._scheduled = True
        else:
            h = TimerHandle(float(when), callback, args, self, copy_context() if context is None else context)
        self._schedule(h)
        return h

    def _run_handle(self, h: Any) -> None:
        """The Reactor's, and in debug mode asyncio's report of a callback (a task's
        step included) that held the loop ``slow_callback_duration`` or longer; the
        running handle is ``_current_handle``, whose traceback the exception handler
        then adds."""
        if not self._debug:
            Reactor._run_handle(self, h)
            return
        self._current_handle = h
        try:
            t0 = _monotonic()
            Reactor._run_handle(self, h)
            dt = _monotonic() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning("Executing %s took %.3f seconds", base_events._format_handle(h), dt)
        finally:
            self._current_handle = None

    def _timer_handle_cancelled(self, handle: Any) -> None:
        """An ``asyncio.TimerHandle`` (debug mode) is being cancelled: counted as our own ones are.
        asyncio calls this *before* it marks the handle cancelled, so a purge that this
        count sets off keeps the handle in the heap, as if live: it is then the one
        cancelled timer there (else the live count would stay one too high)."""
        if handle._scheduled:
            self._timer_cancelled()
            if not self._cancelled_timers:
                self._cancelled_timers = 1

    def _callback_failed(self, h: Any, exc: BaseException) -> bool:
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return True
        describe = getattr(h, "_describe", None)
        self.call_exception_handler({"message": f"Exception in callback {describe() if describe else h!r}",
                                     "exception": exc, "handle": h})
        return False
