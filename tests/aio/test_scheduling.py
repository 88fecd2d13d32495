"""asyncio's scheduling rules on fastmux's loop: call_soon/call_later/call_at
and call_soon_threadsafe with contexts, handles, ordering, closed-loop and
debug-mode checks, what becomes of a callback's exception (asyncio's rule
on the asyncio face; the Reactor keeps its own), and create_task with and
without a task factory."""
from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import threading
import time
from typing import Any, Callable, List

import pytest

from fastmux.reactor import Reactor

from support.net import TIMEOUT

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

SCHEDULERS = {
    "call_soon": lambda loop, cb, **kw: loop.call_soon(cb, **kw),
    "call_soon_threadsafe": lambda loop, cb, **kw: loop.call_soon_threadsafe(cb, **kw),
    "call_later": lambda loop, cb, **kw: loop.call_later(0, cb, **kw),
    "call_at": lambda loop, cb, **kw: loop.call_at(loop.time(), cb, **kw),
}


def run_once(loop: Any) -> None:
    """Run the loop until every callback ready now (and due timers) has run."""
    loop.run_until_complete(asyncio.sleep(0))


def run_soon(loop: Any, seconds: float) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


@pytest.mark.parametrize("how", SCHEDULERS)
def test_callback_runs_in_a_copy_of_the_callers_context(loop: Any, how: str) -> None:
    seen: List[str] = []

    def callback() -> None:
        seen.append(var.get())
        var.set("changed inside")

    token = var.set("caller's")
    try:
        handle = SCHEDULERS[how](loop, callback)
        var.set("changed after scheduling")  # the copy was taken when scheduled
        ctx = handle.get_context()
        assert isinstance(ctx, contextvars.Context) and ctx[var] == "caller's"
        run_once(loop)
        assert seen == ["caller's"]
        assert var.get() == "changed after scheduling"  # nothing leaked out
    finally:
        var.reset(token)


@pytest.mark.parametrize("how", SCHEDULERS)
def test_callback_runs_in_the_context_given(loop: Any, how: str) -> None:
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")
    seen: List[str] = []

    def callback() -> None:
        seen.append(var.get())
        var.set("set by the callback")

    handle = SCHEDULERS[how](loop, callback, context=ctx)
    assert handle.get_context() is ctx
    run_once(loop)
    assert seen == ["given"]
    assert ctx[var] == "set by the callback"  # the given context itself, not a copy
    assert var.get() == "unset"


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
def test_handle_api(loop: Any, debug: bool) -> None:
    loop.set_debug(debug)
    ran: List[str] = []
    h = loop.call_soon(ran.append, "soon")
    assert isinstance(h, asyncio.Handle) if debug else hasattr(h, "cancel")
    assert not h.cancelled()
    h.cancel()
    h.cancel()  # idempotent
    assert h.cancelled()
    t = loop.call_at(loop.time() + 0.01, ran.append, "timer")
    assert t.when() == pytest.approx(loop.time() + 0.01, abs=0.01)
    t2 = loop.call_later(0.005, ran.append, "later")
    assert loop.time() <= t2.when() <= loop.time() + 0.005
    t.cancel()
    assert t.cancelled()
    run_soon(loop, 0.03)
    assert ran == ["later"]
    assert "cancelled" in repr(h) and "cancelled" in repr(t)


def test_fifo_and_timers_by_deadline_then_scheduling_order(loop: Any) -> None:
    order: List[Any] = []
    now = loop.time()
    loop.call_at(now + 0.002, order.append, "t2-a")
    loop.call_at(now + 0.001, order.append, "t1")
    loop.call_at(now + 0.002, order.append, "t2-b")
    loop.call_later(0, order.append, "t0")
    for i in range(5):
        loop.call_soon(order.append, i)
    loop.call_soon_threadsafe(order.append, "threadsafe")
    run_soon(loop, 0.02)
    assert order == [0, 1, 2, 3, 4, "threadsafe", "t0", "t1", "t2-a", "t2-b"]


def test_callback_scheduled_by_a_callback_runs_next_iteration(loop: Any) -> None:
    order: List[str] = []

    def first() -> None:
        order.append("first")
        loop.call_soon(order.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    run_once(loop)
    run_once(loop)
    assert order == ["first", "second", "scheduled by first"]


def test_none_delay_or_deadline_is_a_type_error(loop: Any) -> None:
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(TypeError):
        loop.call_at(None, print)
    assert loop.statistics()["timers"] == 0


def test_closed_loop_refuses_callbacks(no_leaks: None) -> None:
    import fastmux.asyncio as fasyncio

    loop = fasyncio.new_event_loop()
    loop.close()
    for schedule in SCHEDULERS.values():
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            schedule(loop, print)
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            loop.run_until_complete(coro)
    finally:
        coro.close()


def test_call_soon_threadsafe_wakes_a_waiting_loop(loop: Any) -> None:
    fut = loop.create_future()
    seen: List[str] = []

    def from_thread() -> None:
        var.set("thread's")
        loop.call_soon_threadsafe(lambda: (seen.append(var.get()), fut.set_result("woken")))

    timer = threading.Timer(0.05, from_thread)
    timer.start()
    try:
        # no timer of its own: only the wake-up ends the wait
        assert loop.run_until_complete(asyncio.wait_for(fut, TIMEOUT)) == "woken"
    finally:
        timer.join()
    assert seen == ["thread's"]  # a copy of the calling thread's context


# -- debug mode


async def _coro_function() -> None:
    pass


@pytest.mark.parametrize("how", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_debug_refuses_coroutine_functions(loop: Any, how: str) -> None:
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        SCHEDULERS[how](loop, _coro_function)
    loop.set_debug(False)  # the fast path does not check, as asyncio's loop does not
    SCHEDULERS[how](loop, _coro_function)
    with pytest.warns(RuntimeWarning, match="never awaited"):
        run_once(loop)
        import gc
        gc.collect()


def test_debug_handles_record_where_they_were_made(loop: Any) -> None:
    loop.set_debug(True)
    handles = [loop.call_soon(print), loop.call_later(10, print), loop.call_at(loop.time() + 10, print),
               loop.call_soon_threadsafe(print)]
    for h in handles:
        assert h._source_traceback, h
        assert h._source_traceback[-1].name == "test_debug_handles_record_where_they_were_made"
        h.cancel()


def test_debug_refuses_call_soon_from_another_thread(loop: Any) -> None:
    loop.set_debug(True)
    errors: List[BaseException] = []

    def other_thread() -> None:
        try:
            loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(exc)

    async def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        await loop.run_in_executor(None, thread.join)

    loop.run_until_complete(main())
    assert len(errors) == 1 and "thread" in str(errors[0])


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
def test_cancelled_timers_are_purged_and_counted(loop: Any, debug: bool) -> None:
    """Arming and cancelling a timeout per request does not grow the heap, and the
    count of cancelled entries stays exact: asyncio's own TimerHandles (debug
    mode) tell the loop through ``_timer_handle_cancelled``, before they are
    marked cancelled."""
    loop.set_debug(debug)
    keep = [loop.call_later(3600, print) for _ in range(3)]
    for _ in range(2000):
        loop.call_later(3600, print).cancel()
    stats = loop.statistics()
    assert stats["timer_heap"] < 500, stats
    assert stats["timers"] == 3, stats  # the live ones
    assert stats["cancelled_timers"] == stats["timer_heap"] - 3, stats
    for h in keep:
        h.cancel()
    stats = loop.statistics()
    assert stats["timers"] == 0 and stats["cancelled_timers"] == stats["timer_heap"], stats


def test_debug_cancelled_timer_is_counted_once(loop: Any) -> None:
    loop.set_debug(True)
    keep = loop.call_later(3600, print)
    h = loop.call_later(3600, print)
    h.cancel()
    h.cancel()
    assert loop.statistics()["cancelled_timers"] == 1
    ran = loop.call_later(0, print)
    run_soon(loop, 0.001)
    ran.cancel()  # already run: not in the heap any more
    assert loop.statistics()["cancelled_timers"] == 1
    keep.cancel()


# -- a callback's exception


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
@pytest.mark.parametrize("how", SCHEDULERS)
def test_callback_exception_goes_to_the_handler(loop: Any, how: str, debug: bool) -> None:
    loop.set_debug(debug)
    boom = ValueError("boom")
    handle = SCHEDULERS[how](loop, lambda: _raise(boom))
    after: List[int] = []
    loop.call_soon(after.append, 1)
    run_soon(loop, 0.001)
    assert after == [1]
    [context] = loop.errors
    loop.errors.clear()
    assert context["exception"] is boom
    assert context["handle"] is handle
    assert context["message"].startswith("Exception in callback")


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
def test_debug_reports_slow_callbacks_and_task_steps(loop: Any, debug: bool,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """asyncio's debug mode: a callback or task step that holds the loop for
    ``slow_callback_duration`` or longer is logged, with the handle it ran."""
    loop.set_debug(debug)
    loop.slow_callback_duration = 0.02
    current: List[Any] = []

    def quick() -> None:
        current.append(loop._current_handle)

    def slow_callback() -> None:
        time.sleep(0.03)

    async def slow_step() -> None:
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        quick_handle = loop.call_soon(quick)
        loop.call_soon(slow_callback)
        loop.run_until_complete(slow_step())
    reports = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    if not debug:
        assert reports == [] and current == [None]
        return
    assert current == [quick_handle] and loop._current_handle is None
    assert len(reports) == 2, reports
    assert re.match(r"^Executing <Handle .*slow_callback.*> took 0\.\d{3} seconds$", reports[0])
    assert re.match(r"^Executing <Task .*slow_step.*> took 0\.\d{3} seconds$", reports[1])


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
def test_cancelled_error_of_a_callback_is_reported_not_raised(loop: Any, debug: bool) -> None:
    loop.set_debug(debug)
    exc = asyncio.CancelledError()
    loop.call_soon(_raise, exc)
    loop.call_later(0, _raise, asyncio.CancelledError())
    assert loop.run_until_complete(asyncio.sleep(0.001, result="still running")) == "still running"
    assert [type(c["exception"]) for c in loop.errors] == [asyncio.CancelledError] * 2
    assert loop.errors[0]["exception"] is exc
    loop.errors.clear()


@pytest.mark.parametrize("debug", [False, True], ids=["fast", "debug"])
@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("how", ["call_soon", "call_later"])
def test_system_exit_and_keyboard_interrupt_propagate(loop: Any, exc_type: type, how: str, debug: bool) -> None:
    loop.set_debug(debug)
    SCHEDULERS[how](loop, lambda: _raise(exc_type()))
    with pytest.raises(exc_type):
        run_soon(loop, 0.001)
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, result="usable")) == "usable"  # still works
    # the task left suspended by the interruption, finished so that close() finds no pending task
    for task in asyncio.all_tasks(loop):
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_reader_callback_system_exit_propagates(loop: Any, exc_type: type) -> None:
    import socket

    a, b = socket.socketpair()
    try:
        loop.add_reader(a, _raise, exc_type())
        b.send(b"x")
        with pytest.raises(exc_type):
            loop.run_until_complete(asyncio.sleep(TIMEOUT))
        loop.remove_reader(a)
        boom = OSError("reader failed")
        loop.add_reader(a, _raise, boom)
        run_soon(loop, 0.001)
        assert loop.remove_reader(a)
        assert loop.errors and all(c["exception"] is boom for c in loop.errors)
        assert "handle" in loop.errors[0]
        loop.errors.clear()
    finally:
        a.close()
        b.close()
    for task in asyncio.all_tasks(loop):
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))


# -- create_task: asyncio's own, for the running interpreter


async def _task_facts(result: Any = None) -> Any:
    """What a task sees of itself: its name and the context it runs in."""
    return asyncio.current_task().get_name(), var.get(), result  # type: ignore[union-attr]


def _on_both(scenario: Callable[[Any], Any]) -> Any:
    """``scenario(loop)`` on the stdlib's loop and on fastmux's: what each returns must be
    the same (so the test follows whatever this interpreter's asyncio does)."""
    import fastmux.asyncio as fasyncio

    results = []
    for new_loop in (asyncio.SelectorEventLoop, fasyncio.new_event_loop):
        loop = new_loop()
        try:
            results.append(scenario(loop))
        finally:
            loop.close()
    assert results[0] == results[1]
    return results[1]


def test_create_task_runs_the_coroutine_in_a_named_task(loop: Any) -> None:
    async def main() -> Any:
        token = var.set("caller's")
        try:
            named = loop.create_task(_task_facts(1), name="the task")
            unnamed = loop.create_task(_task_facts(2))
        finally:
            var.reset(token)
        assert isinstance(named, asyncio.Task) and named.get_loop() is loop
        assert {named, unnamed} <= asyncio.all_tasks(loop) and not named.done()
        return await named, await unnamed, unnamed.get_name()

    named, unnamed, default_name = loop.run_until_complete(main())
    assert named == ("the task", "caller's", 1)  # a copy of the caller's context
    assert default_name.startswith("Task-") and unnamed == (default_name, "caller's", 2)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task takes a context from 3.11")
def test_create_task_runs_in_the_context_given(loop: Any) -> None:
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")
    task = loop.create_task(_task_facts(), context=ctx)
    assert loop.run_until_complete(task)[1] == "given"
    assert var.get() == "unset"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="create_task takes a context from 3.11")
def test_create_task_takes_no_context_before_3_11(loop: Any) -> None:
    coro = _task_facts()
    try:
        with pytest.raises(TypeError, match="context"):
            loop.create_task(coro, context=contextvars.copy_context())
    finally:
        coro.close()


def test_create_task_refuses_a_non_coroutine(loop: Any) -> None:
    with pytest.raises(TypeError, match="coroutine"):
        loop.create_task(print)  # type: ignore[arg-type]


def test_create_task_uses_the_task_class_of_the_moment(loop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio reads ``asyncio.tasks.Task`` on every call; so does fastmux (tracers replace it)."""
    class Traced(asyncio.Task):  # type: ignore[type-arg]
        pass

    monkeypatch.setattr(asyncio.tasks, "Task", Traced)
    task = loop.create_task(_task_facts(), name="traced")
    assert type(task) is Traced
    assert loop.run_until_complete(task)[0] == "traced"


@pytest.mark.parametrize("factory_set", [False, True], ids=["no-factory", "factory"])
def test_closed_loop_refuses_create_task(factory_set: bool, no_leaks: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any task is made (asyncio checks first: a half-made task would be
    reported as destroyed while pending)."""
    import fastmux.asyncio as fasyncio

    loop = fasyncio.new_event_loop()
    calls: List[Any] = []
    monkeypatch.setattr(asyncio.tasks, "Task", lambda *args, **kwargs: calls.append(args))
    if factory_set:
        loop.set_task_factory(lambda *args, **kwargs: calls.append(args))
    loop.close()
    coro = _task_facts()
    try:
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            loop.create_task(coro)
    finally:
        coro.close()
    assert calls == []


def test_task_factory_is_called_as_asyncio_calls_it() -> None:
    """With a factory set, the factory gets what asyncio's create_task gives it in this
    version (``context=`` only when one is given, from 3.11), and the task's name is
    set afterwards the way this version sets it."""
    def scenario(loop: Any) -> Any:
        calls: List[Any] = []

        def factory(loop_: Any, coro: Any, **kwargs: Any) -> Any:
            calls.append((loop_ is loop, sorted(kwargs)))
            return asyncio.Task(coro, loop=loop_, **kwargs)

        async def main() -> Any:
            assert loop.get_task_factory() is None
            loop.set_task_factory(factory)
            assert loop.get_task_factory() is factory
            tasks = [loop.create_task(_task_facts(), name="named"), loop.create_task(_task_facts())]
            if sys.version_info >= (3, 11):
                tasks.append(loop.create_task(_task_facts(), context=contextvars.copy_context(), name="ctx"))
            loop.set_task_factory(None)
            done = [await t for t in tasks]
            return [t.get_name() for t in tasks], [d[0] for d in done]

        def numberless(names: List[str]) -> List[str]:  # "Task-<n>": n differs between the loops
            return [n if not n.startswith("Task-") else "Task-n" for n in names]

        names, seen = loop.run_until_complete(main())
        return numberless(names), numberless(seen), calls  # 3.13.0 names an unnamed task "None"

    names, seen, calls = _on_both(scenario)
    assert names[0] == seen[0] == "named"
    assert calls[:2] == [(True, []), (True, [])]
    if sys.version_info >= (3, 11):
        assert calls[2] == (True, ["context"]) and names[2] == "ctx"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_eager_task_factory_runs_the_first_step_at_once() -> None:
    def scenario(loop: Any) -> Any:
        async def main() -> Any:
            loop.set_task_factory(asyncio.eager_task_factory)
            done_at_once = loop.create_task(_task_facts("eager"), name="eager")
            waits = loop.create_task(asyncio.sleep(0, result="slept"), name="waits")
            state = done_at_once.done(), waits.done()
            return state, done_at_once.result()[1:], done_at_once.get_name(), await waits, waits.get_name()

        return loop.run_until_complete(main())

    state, result, name, slept, waits_name = _on_both(scenario)
    assert state == (True, False) and result == ("unset", "eager") and slept == "slept"
    assert name == waits_name.replace("waits", "eager") == "eager"


@pytest.mark.parametrize("factory_set", [False, True], ids=["no-factory", "factory"])
def test_debug_tasks_record_where_they_were_made(loop: Any, factory_set: bool) -> None:
    loop.set_debug(True)
    if factory_set:
        loop.set_task_factory(lambda loop_, coro: asyncio.Task(coro, loop=loop_))

    async def main() -> Any:
        task = loop.create_task(_task_facts())
        await task
        return task._source_traceback

    traceback = loop.run_until_complete(main())
    if factory_set:  # as on asyncio's loop: made in the factory, called by asyncio's create_task
        assert [(f.name, f.filename.endswith("base_events.py")) for f in traceback[-2:]] == \
            [("create_task", True), ("<lambda>", False)]
    else:  # asyncio cuts its create_task's frame: so does fastmux, its _new_task's too
        # (above main are the loop's own frames, as asyncio's _run_once is there: the
        # pure twin's _run_handle, none for the compiled one)
        assert traceback[-1].name == "main"
        assert not any(f.name in ("create_task", "_new_task") for f in traceback)


# -- the Reactor face keeps its rule: anything but an Exception propagates


@pytest.mark.parametrize("exc_type", [asyncio.CancelledError, SystemExit, GeneratorExit])
@pytest.mark.parametrize("schedule", [lambda r, cb: r.call_soon(cb), lambda r, cb: r.call_later(0, cb)],
                         ids=["call_soon", "call_later"])
def test_reactor_lets_every_base_exception_through(exc_type: type, schedule: Callable[..., Any],
                                                   no_leaks: None) -> None:
    with Reactor() as reactor:
        errors: List[Any] = []
        reactor.set_exception_handler(lambda _r, ctx: errors.append(ctx))
        schedule(reactor, lambda: _raise(exc_type()))
        with pytest.raises(exc_type):
            reactor.run_until(reactor.time() + TIMEOUT)
        boom = ValueError("boom")
        h = schedule(reactor, lambda: _raise(boom))
        reactor.run_until(reactor.time() + 0.01)
        assert [(c["exception"], c["handle"]) for c in errors] == [(boom, h)]
        assert reactor.call_soon(print).get_context() is None  # the caller's context, whichever it is then
