"""How the menu and upload servers recognise a message that the tutorial's
clients send without a newline or any other terminator: by the silence
after it (``QUIET`` seconds by default)."""
from __future__ import annotations

from typing import Any, Callable

from ._runtime import Runtime

__all__ = ["QUIET", "QuietTimer"]

QUIET = 0.3  # seconds of silence that end a message sent without a newline


class QuietTimer:
    """Calls ``fire()`` once the peer has sent nothing for ``period`` seconds.

    For the tutorial's clients, which send a message with no terminator and
    wait for the answer: the protocol ``arm()``s the timer while its buffer
    holds an unterminated message and ``cancel()``s it once the message is
    complete.  ``last()`` is when the peer last sent data (the protocol keeps
    that time for its idle timeout anyway), so a read costs the timer
    nothing; it re-arms itself for the rest of the period when it finds that
    data arrived meanwhile.  A negative ``period`` never fires.
    """

    __slots__ = ("_runtime", "_period", "_last", "_fire", "_handle")

    def __init__(self, runtime: Runtime, period: float, last: Callable[[], float],
                 fire: Callable[[], None]) -> None:
        self._runtime = runtime
        self._period = period
        self._last = last
        self._fire = fire
        self._handle: Any = None

    def arm(self) -> None:
        if self._handle is None and self._period >= 0:
            self._handle = self._runtime.call_later(self._period, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        remaining = self._last() + self._period - self._runtime.time()
        if remaining > 0:
            self._handle = self._runtime.call_later(remaining, self._check)
        else:
            self._fire()
