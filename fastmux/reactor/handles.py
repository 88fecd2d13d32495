"""Callback handles: what ``call_soon``/``call_later``/``call_at`` return.

A :class:`Handle` is a callback plus its arguments, a cancelled flag and the
``contextvars.Context`` to run it in (None: the caller's, as the Reactor's own
API does; the asyncio face always gives one, as asyncio does); the loop runs
it at most once (signal handlers reuse theirs for every arrival).
A :class:`TimerHandle` also knows its deadline and tells the loop when it is
cancelled, so the loop can purge cancelled timers from its heap once they
dominate it (see ``Reactor._timer_cancelled``): a program that arms and
cancels a timeout per request does not grow the heap without bound.

The loop's heap holds ``(when, seq, handle)`` tuples, not handles, so that
ordering is done by C tuple comparison (no Python ``__lt__`` per sift step)
and equal deadlines run in scheduling order (``seq``).

Compiled into ``_handles_c`` (typed by ``src/fastmux/reactor/_handles_c.pxd``):
asyncio programs make a handle for every step of every task, and the loop
reads a compiled one's fields in C.
"""
from __future__ import annotations

from contextvars import Context
from typing import Any, Callable, Optional, Tuple

__all__ = ["Handle", "TimerHandle"]


class Handle:
    """A scheduled callback; ``cancel()`` before it runs and it never will."""

    __slots__ = ("_callback", "_args", "_cancelled", "_context", "__weakref__")

    def __init__(self, callback: Callable[..., Any], args: Tuple[Any, ...], context: Optional[Context] = None) -> None:
        self._callback: Optional[Callable[..., Any]] = callback
        self._args: Optional[Tuple[Any, ...]] = args
        self._cancelled = False
        self._context = context

    def cancel(self) -> None:
        """Prevent the callback from running; idempotent.  Drops the references."""
        if not self._cancelled:
            self._cancelled = True
            self._callback = None
            self._args = None

    def cancelled(self) -> bool:
        return self._cancelled

    def get_context(self) -> Optional[Context]:
        """The context the callback runs in (None: whichever is current when it runs)."""
        return self._context

    def _describe(self) -> str:
        cb = self._callback
        if cb is None:
            return "<cancelled>"
        name = getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None) or repr(cb)
        return f"{name}{self._args!r}"

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__}{state} {self._describe()}>"


class TimerHandle(Handle):
    """A callback scheduled for a deadline on the reactor's ``time()`` clock."""

    __slots__ = ("_when", "_loop", "_scheduled")

    def __init__(self, when: float, callback: Callable[..., Any], args: Tuple[Any, ...], loop: Any,
                 context: Optional[Context] = None) -> None:
        Handle.__init__(self, callback, args, context)
        self._when = when
        self._loop = loop
        self._scheduled = True  # in the loop's heap; cleared when popped

    def when(self) -> float:
        """The deadline, in the reactor's ``time()`` clock (monotonic seconds)."""
        return self._when

    def cancel(self) -> None:
        if not self._cancelled:
            Handle.cancel(self)
            if self._scheduled:
                self._loop._timer_cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<TimerHandle{state} when={self._when:.6f} {self._describe()}>"
