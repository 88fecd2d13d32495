"""The loop itself: callbacks, running and stopping, errors, threads, executors, closing."""
from __future__ import annotations

import concurrent.futures
import gc
import logging
import os
import socket
import threading
import time

import pytest

import fastmux
from fastmux.reactor import Reactor

TIMEOUT = 10.0


def test_exports():
    assert fastmux.Reactor is Reactor
    for name in ("Reactor", "Protocol", "DatagramProtocol", "BaseProtocol", "Handle", "TimerHandle"):
        assert name in fastmux.__all__
        assert hasattr(fastmux, name)


def test_default_backend_is_the_best():
    with Reactor() as loop:
        assert loop.backend == "epoll"
        assert not loop.edge


@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_backend_by_name(backend):
    with Reactor(backend) as loop:
        assert loop.backend == backend
        assert loop.statistics()["backend"] == backend


def test_bad_arguments():
    with pytest.raises(ValueError):
        Reactor("kqueue-on-linux")
    with pytest.raises(ValueError):
        Reactor("poll", edge=True)


def test_call_soon_order_and_args(loop):
    out = []
    for i in range(5):
        loop.call_soon(out.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [0, 1, 2, 3, 4]


def test_callbacks_ready_before_the_wait_run_before_its_io(loop, closing):
    """asyncio's order: what was scheduled before the wait runs before the I/O the
    wait found, and what that I/O schedules runs in the same iteration."""
    a, b = (closing(s) for s in socket.socketpair())
    out = []

    def on_read():
        out.append(("read", a.recv(10), loop.statistics()["iterations"]))
        loop.call_soon(lambda: out.append(("woken", loop.statistics()["iterations"])))

    loop.add_reader(a, on_read)
    b.send(b"x")
    loop.call_soon(lambda: out.append(("early", loop.statistics()["iterations"])))
    assert loop.run_until(lambda: len(out) == 3, timeout=TIMEOUT)
    loop.remove_reader(a)
    assert [o[0] for o in out] == ["early", "read", "woken"]
    assert out[0][-1] == out[1][-1] == out[2][-1]


def test_self_rescheduling_callback_does_not_starve_io(loop, closing):
    """A callback that reschedules itself forever runs at most twice per iteration."""
    a, b = (closing(s) for s in socket.socketpair())
    spins = []
    got = []

    def spin():
        spins.append(1)
        loop.call_soon(spin)

    loop.add_reader(a, lambda: got.append(a.recv(10)))
    loop.call_soon(spin)
    start = loop.statistics()["iterations"]
    loop.call_later(0.01, b.send, b"x")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    loop.remove_reader(a)
    assert got == [b"x"]
    assert len(spins) <= 2 * (loop.statistics()["iterations"] - start)


def test_cancelled_handle_does_not_run(loop, handles_module):
    out = []
    h = loop.call_soon(out.append, 1)
    assert isinstance(h, handles_module.Handle)
    h.cancel()
    h.cancel()  # idempotent
    assert h.cancelled()
    loop.call_soon(out.append, 2)
    assert loop.run_until(lambda: out, timeout=TIMEOUT)
    assert out == [2]
    assert "cancelled" in repr(h)


def test_stop_before_run_does_one_iteration(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.stop()
    loop.run_forever()
    assert out == [1]
    assert not loop.is_running()


def test_run_until_predicate_deadline_timeout(loop):
    hits = []
    loop.call_later(0.01, hits.append, 1)
    assert loop.run_until(lambda: hits, timeout=TIMEOUT) is True
    start = loop.time()
    assert loop.run_until(start + 0.02) is True
    assert loop.time() >= start + 0.02
    assert loop.run_until(lambda: False, timeout=0.02) is False
    loop.call_soon(loop.stop)
    assert loop.run_until(lambda: False, timeout=TIMEOUT) is False
    assert loop.statistics()["timers"] <= 1  # run_until's own timers are cancelled


def test_run_until_true_at_once_does_not_iterate(loop):
    before = loop.statistics()["iterations"]
    assert loop.run_until(lambda: True) is True
    assert loop.statistics()["iterations"] == before


def test_not_reentrant(loop):
    caught = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as exc:
            caught.append(exc)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert caught and "already running" in str(caught[0])


def test_closed_loop_refuses_work():
    loop = Reactor()
    loop.close()
    loop.close()  # idempotent
    assert loop.is_closed()
    for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                 lambda: loop.call_soon_threadsafe(print), lambda: loop.run_forever(),
                 lambda: loop.add_reader(0, print)):
        with pytest.raises(RuntimeError):
            call()
    assert loop.remove_reader(0) is False


def test_close_while_running_is_refused(loop):
    caught = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            caught.append(exc)
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert caught


def test_context_manager_closes():
    with Reactor() as loop:
        assert not loop.is_closed()
    assert loop.is_closed()


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_close_releases_every_fd(backend):
    before = _open_fds()
    for _ in range(3):
        loop = Reactor(backend)
        loop.call_soon_threadsafe(loop.stop)
        loop.run_forever()
        loop.close()
    assert _open_fds() == before


def test_unclosed_reactor_warns():
    loop = Reactor()
    with pytest.warns(ResourceWarning):
        del loop
        gc.collect()


def test_callback_exception_is_reported_and_loop_goes_on(loop, handles_module):
    out = []

    def boom():
        raise ZeroDivisionError("boom")

    loop.call_soon(boom)
    loop.call_soon(out.append, "after")
    loop.call_later(0.001, boom)
    loop.call_later(0.002, out.append, "timer after")
    assert loop.run_until(lambda: len(out) == 2, timeout=TIMEOUT)
    errors, loop.errors[:] = list(loop.errors), []
    assert len(errors) == 2
    for ctx in errors:
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert "boom" in ctx["message"]
        assert isinstance(ctx["handle"], handles_module.Handle)


def test_default_exception_handler_logs_traceback(caplog):
    with Reactor() as loop:
        def boom():
            raise KeyError("logged")

        loop.call_soon(boom)
        loop.call_soon(loop.stop)
        with caplog.at_level(logging.ERROR, logger="fastmux.reactor"):
            loop.run_forever()
    records = [r for r in caplog.records if r.name == "fastmux.reactor"]
    assert len(records) == 1
    assert records[0].exc_info and records[0].exc_info[0] is KeyError
    assert "Exception in callback" in records[0].getMessage()


def test_broken_exception_handler_falls_back_to_default(caplog):
    with Reactor() as loop:
        def bad_handler(loop, ctx):
            raise RuntimeError("handler broke")

        loop.set_exception_handler(bad_handler)
        assert loop.get_exception_handler() is bad_handler
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(loop.stop)
        with caplog.at_level(logging.ERROR, logger="fastmux.reactor"):
            loop.run_forever()
        loop.set_exception_handler(None)
    messages = [r.getMessage() for r in caplog.records]
    assert any("Unhandled error in the exception handler" in m for m in messages)
    with Reactor() as loop, pytest.raises(TypeError):
        loop.set_exception_handler(42)


def test_base_exception_propagates_and_loop_stays_usable(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    out = []
    loop.call_soon(out.append, 1)
    assert loop.run_until(lambda: out, timeout=TIMEOUT)


def test_call_soon_threadsafe_from_8_threads(loop):
    """No callback lost, none duplicated, order kept per thread."""
    n_threads, per_thread = 8, 500
    seen = []
    done = []
    barrier = threading.Barrier(n_threads)

    def worker(t):
        barrier.wait(TIMEOUT)
        for i in range(per_thread):
            loop.call_soon_threadsafe(seen.append, (t, i))
        loop.call_soon_threadsafe(done.append, t)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    try:
        assert loop.run_until(lambda: len(done) == n_threads, timeout=TIMEOUT)
    finally:
        for t in threads:
            t.join(TIMEOUT)
    assert len(seen) == n_threads * per_thread
    assert len(set(seen)) == len(seen)
    for t in range(n_threads):
        mine = [i for (tt, i) in seen if tt == t]
        assert mine == list(range(per_thread))


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop):
    out = []

    def later():
        time.sleep(0.05)
        loop.call_soon_threadsafe(out.append, threading.get_ident())

    t = threading.Thread(target=later)
    t.start()
    try:
        # nothing else is scheduled: the loop blocks in the selector until woken
        assert loop.run_until(lambda: out, timeout=TIMEOUT)
    finally:
        t.join(TIMEOUT)
    assert out == [t.ident]


def test_run_in_executor_default_pool(loop):
    results = []
    fut = loop.run_in_executor(None, sum, [1, 2, 3],
                               done=lambda f: results.append((f.result(), threading.get_ident())))
    assert isinstance(fut, concurrent.futures.Future)
    assert loop.run_until(lambda: results, timeout=TIMEOUT)
    assert results == [(6, threading.get_ident())]  # done ran on the loop thread


def test_run_in_executor_exception_and_no_done(loop):
    failures = []
    fut = loop.run_in_executor(None, int, "not a number", done=lambda f: failures.append(f.exception()))
    assert loop.run_until(lambda: failures, timeout=TIMEOUT)
    assert isinstance(failures[0], ValueError)
    assert isinstance(fut.exception(TIMEOUT), ValueError)
    plain = loop.run_in_executor(None, pow, 2, 10)
    assert plain.result(TIMEOUT) == 1024


def test_run_in_executor_given_thread_pool(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="given") as ex:
        names = []
        loop.run_in_executor(ex, lambda: threading.current_thread().name,
                             done=lambda f: names.append(f.result()))
        assert loop.run_until(lambda: names, timeout=TIMEOUT)
    assert names[0].startswith("given")


def test_run_in_executor_process_pool():
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with Reactor() as loop, concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        results = []
        loop.run_in_executor(ex, pow, 3, 4, done=lambda f: results.append(f.result()))
        assert loop.run_until(lambda: results, timeout=60)
    assert results == [81]


def test_done_after_close_is_dropped():
    loop = Reactor()
    gate = threading.Event()
    called = []
    fut = loop.run_in_executor(None, gate.wait, TIMEOUT, done=called.append)
    loop.close()
    gate.set()
    fut.result(TIMEOUT)
    assert called == []


def test_time_is_monotonic(loop):
    a = loop.time()
    b = loop.time()
    assert b >= a
    assert abs(a - time.monotonic()) < 1.0


def test_statistics_and_repr(loop):
    stats = loop.statistics()
    for key in ("iterations", "ready", "timers", "backend", "edge", "registered", "rebuilds"):
        assert key in stats
    assert loop.backend in repr(loop)
