"""Timers: order, cancellation (and the purge that keeps the heap small), precision without spinning."""
from __future__ import annotations

import sys
import time

import pytest

from fastmux.reactor import Reactor


TIMEOUT = 10.0


def test_deadline_order(loop):
    out = []
    for delay in (0.03, 0.01, 0.02, 0.0):
        loop.call_later(delay, out.append, delay)
    assert loop.run_until(lambda: len(out) == 4, timeout=TIMEOUT)
    assert out == [0.0, 0.01, 0.02, 0.03]


def test_equal_deadlines_run_in_scheduling_order(loop):
    out = []
    when = loop.time() + 0.005
    for i in range(50):
        loop.call_at(when, out.append, i)
    assert loop.run_until(lambda: len(out) == 50, timeout=TIMEOUT)
    assert out == list(range(50))


def test_timer_never_fires_early(loop):
    fired = []
    deadlines = []
    for delay in (0.0002, 0.0007, 0.0013, 0.004, 0.011):
        h = loop.call_later(delay, lambda h=None: fired.append(time.monotonic()))
        deadlines.append(h.when())
    assert loop.run_until(lambda: len(fired) == len(deadlines), timeout=TIMEOUT)
    for when, at in zip(sorted(deadlines), fired):
        assert at >= when


def test_timer_handle_api(loop, handles_module):
    h = loop.call_at(loop.time() + 100, print)
    assert isinstance(h, handles_module.TimerHandle)
    assert h.when() > loop.time()
    assert "TimerHandle" in repr(h)
    h.cancel()
    assert h.cancelled()
    assert loop.statistics()["timers"] == 0


def test_cancelled_timer_does_not_run(loop):
    out = []
    h = loop.call_later(0.001, out.append, "cancelled")
    loop.call_later(0.002, out.append, "kept")
    h.cancel()
    assert loop.run_until(lambda: out, timeout=TIMEOUT)
    assert out == ["kept"]


def test_timer_cancels_a_later_due_timer(loop):
    """Both are due in the same iteration; the first cancels the second."""
    out = []
    when = loop.time() + 0.002
    second = None

    def first():
        out.append("first")
        second.cancel()

    loop.call_at(when, first)
    second = loop.call_at(when, out.append, "second")
    loop.call_at(when + 0.001, out.append, "third")
    assert loop.run_until(lambda: "third" in out, timeout=TIMEOUT)
    assert out == ["first", "third"]


def test_timer_scheduling_zero_delay_timer_does_not_starve(loop):
    """A timer re-arming itself with delay 0 runs once per iteration, not forever in one."""
    count = []

    def again():
        count.append(loop.statistics()["iterations"])
        if len(count) < 20:
            loop.call_later(0, again)

    loop.call_later(0, again)
    assert loop.run_until(lambda: len(count) == 20, timeout=TIMEOUT)
    assert len(set(count)) == 20  # one per iteration


def test_cancelled_timers_are_purged(loop):
    handles = [loop.call_later(100 + i, print) for i in range(1000)]
    for h in handles[:900]:
        h.cancel()
    stats = loop.statistics()
    assert stats["timers"] == 100
    assert stats["timer_heap"] < 500  # purged once cancelled ones dominated
    for h in handles[900:]:
        h.cancel()
    assert loop.statistics()["timer_heap"] < 250


def test_arm_and_cancel_per_request_does_not_leak(loop):
    """The classic per-request timeout: heap size stays bounded."""
    for _ in range(20000):
        loop.call_later(30.0, print).cancel()
    assert loop.statistics()["timer_heap"] <= 2 * 100 + 2


def test_cancel_after_fired_is_harmless(loop):
    out = []
    h = loop.call_later(0, out.append, 1)
    assert loop.run_until(lambda: out, timeout=TIMEOUT)
    before = loop.statistics()["cancelled_timers"]
    h.cancel()
    assert loop.statistics()["cancelled_timers"] == before


def _iterations_until(loop, pred):
    before = loop.statistics()["iterations"]
    assert loop.run_until(pred, timeout=TIMEOUT)
    return loop.statistics()["iterations"] - before


@pytest.mark.parametrize("delay", [0.0001, 0.0004, 0.0009, 0.0015, 0.003, 0.02])
def test_short_timers_do_not_spin(loop, delay):
    """A sub-/few-millisecond timer takes a handful of iterations: the timeout is
    never rounded down to a busy poll."""
    fired = []
    loop.call_later(delay, fired.append, 1)
    n = _iterations_until(loop, lambda: fired)
    assert n <= 4, f"{n} iterations for a {delay}s timer"


def test_sub_millisecond_wait_is_not_rounded_to_milliseconds():
    """epoll takes milliseconds; the reactor finishes short waits in select() on the
    epoll fd with microseconds, so a 0.3 ms timer is not a 1 ms one."""
    with Reactor("epoll") as loop:
        calls = []
        watch_module = sys.modules[type(loop._watch).__module__]  # the loop twin's FdWatch twin
        real = watch_module._select

        def spy(r, w, x, timeout):
            calls.append(timeout)
            return real(r, w, x, timeout)

        watch_module._select = spy
        try:
            fired = []
            loop.call_later(0.0003, fired.append, 1)
            assert loop.run_until(lambda: fired, timeout=TIMEOUT)
        finally:
            watch_module._select = real
        assert calls, "the fine wait was not used"
        assert all(0 < t < 0.0011 for t in calls)


class CountingSelector:
    """Wraps a selector and records every select() timeout."""

    def __init__(self, inner):
        self.inner = inner
        self.timeouts = []

    def select(self, timeout=None):
        self.timeouts.append(timeout)
        return self.inner.select(timeout)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_long_wait_is_one_blocking_call(backend):
    """A 50 ms timer costs a couple of waits, whatever the backend's resolution."""
    import fastmux.selectors as fsel

    inner = getattr(fsel, {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}[backend])()
    spy = CountingSelector(inner)
    with Reactor(backend, selector=spy) as loop:
        fired = []
        loop.call_later(0.05, fired.append, 1)
        assert loop.run_until(lambda: fired, timeout=TIMEOUT)
    blocking = [t for t in spy.timeouts if t is None or t > 0]
    assert 1 <= len(blocking) <= 3
    assert all(t is None or t <= 0.05 for t in blocking)


def test_timer_precision_generous(loop):
    """Lateness is bounded (generously: this is not a benchmark)."""
    late = []
    for delay in (0.0005, 0.002):
        fired = []
        h = loop.call_later(delay, lambda: fired.append(time.monotonic()))
        assert loop.run_until(lambda: fired, timeout=TIMEOUT)
        late.append(fired[0] - h.when())
    assert all(0 <= x < 0.25 for x in late), late


def test_interrupted_timer_step_loses_no_timer(loop):
    out = []
    when = loop.time() + 0.002

    def interrupt():
        raise KeyboardInterrupt

    loop.call_at(when, out.append, 1)
    loop.call_at(when, interrupt)
    loop.call_at(when, out.append, 3)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until(lambda: len(out) == 2, timeout=TIMEOUT)
    assert loop.run_until(lambda: len(out) == 2, timeout=TIMEOUT)
    assert out == [1, 3]
