"""Signal handlers that run in the loop, not in signal context.

The C-level handler CPython installs writes the signal number to the fd
given to ``signal.set_wakeup_fd``; here that is one end of a socketpair
whose other end the reactor watches.  Reading it queues the registered
handler's Handle on the ready list, so the user's callback runs as an
ordinary loop callback, between other callbacks, never in the middle of
one.  (The Python-level handler we install does nothing; it only exists so
that CPython's C handler is the one in place.)  One byte per delivery: a
signal that arrives twice before the loop reads calls the handler twice.

``set_wakeup_fd`` is process-wide and main-thread-only: the previous fd is
restored when the last handler is removed or the reactor closes.  The eventfd
of the reactor's own wake-up cannot serve here: ``set_wakeup_fd`` writes
single bytes, and an eventfd takes 8-byte writes only.
"""
from __future__ import annotations

import signal
import socket
from typing import Any, Callable, Dict, Tuple

from ._fdwatch import EVENT_READ
from .handles import Handle

__all__ = ["SignalRouter"]

_UNCATCHABLE = {getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)}


def _noop_handler(signum: int, frame: Any) -> None:
    pass


class SignalRouter:
    """Owns the wake-up socketpair and the reactor's signal handlers."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._handlers: Dict[int, Handle] = {}
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._installed = False
        self._old_wakeup_fd = -1
        self._io_requeued = False
        self._closed = False
        loop._watch.register(self._rsock.fileno(), EVENT_READ, self)

    def _install(self) -> None:
        # raises ValueError outside the main thread
        old = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        self._old_wakeup_fd = old
        self._installed = True

    def _uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        try:
            current = signal.set_wakeup_fd(self._old_wakeup_fd)
            if current != self._wsock.fileno():  # someone replaced ours meanwhile: put theirs back
                signal.set_wakeup_fd(current)
        except (ValueError, OSError):
            pass

    def add(self, sig: int, callback: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        sig = int(sig)
        if not 0 < sig < signal.NSIG:
            raise ValueError(f"signal number {sig} out of range [1; {signal.NSIG}]")
        if sig in _UNCATCHABLE:
            raise RuntimeError(f"signal {sig} cannot be caught")
        if not self._installed:
            try:
                self._install()
            except ValueError as exc:
                raise RuntimeError(str(exc)) from None
        handle = Handle(callback, args)
        old = self._handlers.get(sig)
        self._handlers[sig] = handle
        try:
            signal.signal(sig, _noop_handler)
            signal.siginterrupt(sig, False)  # restart syscalls (PEP 475 does the rest)
        except (OSError, ValueError) as exc:
            if old is None:
                del self._handlers[sig]
                if not self._handlers:
                    self._uninstall()
            else:
                self._handlers[sig] = old
            raise RuntimeError(f"cannot handle signal {sig}: {exc}") from None
        if old is not None:
            old.cancel()

    def remove(self, sig: int) -> bool:
        sig = int(sig)
        handle = self._handlers.pop(sig, None)
        if handle is None:
            return False
        handle.cancel()
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot restore signal {sig}: {exc}") from None
        if not self._handlers:
            self._uninstall()
        return True

    def _on_io(self, mask: int) -> None:
        ready = self._loop._ready
        while True:
            try:
                data = self._rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._handlers.get(signum)
                if handle is not None and not handle._cancelled:
                    ready.append(handle)

    def _io_retry(self) -> None:
        self._io_requeued = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sig in list(self._handlers):
            try:
                self.remove(sig)
            except RuntimeError:
                pass
        self._uninstall()
        self._loop._watch.unregister(self._rsock.fileno())
        self._rsock.close()
        self._wsock.close()
