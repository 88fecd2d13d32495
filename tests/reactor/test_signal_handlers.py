"""add_signal_handler: callbacks run in the loop, not in signal context."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from fastmux.reactor import Reactor

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    saved_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(saved_fd)
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(saved_fd)


def test_handler_runs_in_the_loop(loop):
    got = []
    in_callback = []

    def handler(tag):
        got.append((tag, threading.get_ident(), bool(in_callback)))

    def busy():
        # the signal arrives while this callback runs; the handler must wait for it to end
        in_callback.append(1)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)
        in_callback.clear()

    loop.add_signal_handler(signal.SIGUSR1, handler, "usr1")
    loop.call_soon(busy)
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got == [("usr1", threading.get_ident(), False)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_a_blocked_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR2, got.append, "woken")
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
    timer.start()
    try:
        assert loop.run_until(lambda: got, timeout=TIMEOUT)
    finally:
        timer.cancel()
        timer.join()
    assert got == ["woken"]


def test_each_delivery_calls_the_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert loop.run_until(lambda n=len(got): len(got) > n, timeout=TIMEOUT)
    assert got == [1, 1, 1]


def test_replace_handler_and_two_signals(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, got.append, "new")
    loop.add_signal_handler(signal.SIGUSR2, got.append, "two")
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert loop.run_until(lambda: len(got) == 2, timeout=TIMEOUT)
    assert sorted(got) == ["new", "two"]


def test_handler_exception_is_reported(loop):
    def bad():
        raise RuntimeError("in handler")

    loop.add_signal_handler(signal.SIGUSR1, bad)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert loop.run_until(lambda: loop.errors, timeout=TIMEOUT)
    assert isinstance(loop.errors.pop()["exception"], RuntimeError)


def test_sigint_restored_to_keyboard_interrupt(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_invalid_signals(loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, print)
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, "nope")


def test_not_from_another_thread():
    errors = []

    def run():
        with Reactor() as loop:
            try:
                loop.add_signal_handler(signal.SIGUSR1, print)
            except RuntimeError as exc:
                errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(TIMEOUT)
    assert errors


def test_close_restores_wakeup_fd_and_handlers():
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    loop = Reactor()
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    assert current == before
