"""The API of ``fastmux.reactor.aioloop.EventLoop`` is asyncio's.

``EventLoop`` derives from the compiled Reactor (through ``AsyncioCore``)
*before* asyncio's Unix selector loop, so any method the Reactor defines
shadows asyncio's unless ``EventLoop`` or ``AsyncioCore`` says otherwise.
These tests pin down, name by name, where each method of asyncio's loop API
comes from: a Reactor method that starts shadowing one (the Reactor's
``create_server`` returns no coroutine, its ``stop`` stops at once, its
exception handler rules differ...) fails here, not in some program.
"""
from __future__ import annotations

import asyncio
import inspect
import sys
from asyncio import base_events, unix_events
from typing import Any, Optional

import pytest

import fastmux.asyncio as fasyncio
import fastmux.reactor
from fastmux.reactor import aioloop
from fastmux.reactor.aioloop import EventLoop

AsyncioCore = aioloop._core.AsyncioCore
Reactor = AsyncioCore.__mro__[1]
StdlibLoop = unix_events._UnixSelectorEventLoop

# The methods asyncio's own code calls on a loop besides the public API: the
# transport factories, the fd hooks of its selector transports, the fd
# ownership check, sendfile's native path and the debug TimerHandle's hook.
PRIVATE_HOOKS = ("_make_socket_transport", "_make_ssl_transport", "_add_reader", "_remove_reader",
                 "_add_writer", "_remove_writer", "_ensure_fd_no_transport", "_sendfile_native",
                 "_timer_handle_cancelled")
API = sorted({n for n in dir(asyncio.AbstractEventLoop) if not n.startswith("_")}) + list(PRIVATE_HOOKS)

# Where the Reactor's own method is asyncio's too, and so taken as it is:
# ``time`` (monotonic seconds, the clock of call_at) and ``is_closed``; and
# ``_run_once``, one iteration of the loop, which asyncio's run_forever calls
# and which is the point of the class.
REACTOR_BY_DESIGN = {"time": "public", "is_closed": "public", "_run_once": "iteration"}


def _definer(cls: type, name: str) -> Optional[type]:
    """The class of ``cls``'s MRO whose namespace holds ``name``, as attribute lookup finds it."""
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def _source(name: str) -> str:
    """Where ``EventLoop.name`` comes from: "reactor", "fastmux" (EventLoop or
    AsyncioCore's own), "asyncio" (asyncio's class or function) or "abstract"
    (AbstractEventLoop's NotImplementedError stub)."""
    value = inspect.getattr_static(EventLoop, name)
    if value is inspect.getattr_static(Reactor, name, None):
        return "reactor"
    owner = _definer(EventLoop, name)
    assert owner is not None, name
    if owner is asyncio.AbstractEventLoop:
        return "abstract"
    if owner in (EventLoop, AsyncioCore):
        # EventLoop's namespace also re-binds asyncio's functions (``run_forever = _Asyncio.run_forever``)
        module = getattr(value, "__module__", "") or ""
        return "asyncio" if module.split(".")[0] == "asyncio" else "fastmux"
    assert owner.__module__.split(".")[0] == "asyncio", (name, owner)
    return "asyncio"


def test_the_reactor_under_the_loop_is_the_compiled_one_when_built() -> None:
    """EventLoop runs on the same twin as fastmux.reactor.Reactor (compiled unless the fallback is wanted)."""
    assert Reactor is fastmux.reactor.Reactor
    assert AsyncioCore.__module__ == ("fastmux.reactor._aiocore_c" if fastmux.reactor.IMPLEMENTATION == "c"
                                      else "fastmux.reactor._aiocore")


@pytest.mark.parametrize("name", API)
def test_api_resolves_to_asyncio_semantics(name: str) -> None:
    source = _source(name)
    if name in REACTOR_BY_DESIGN:
        assert source == "reactor", f"{name}: expected the Reactor's own, found {source}'s"
        return
    assert source != "reactor", f"EventLoop.{name} is the plain Reactor's, which is not asyncio's"
    if source == "abstract":  # a gap only where stdlib's own Unix loop has the same gap
        assert _definer(StdlibLoop, name) is asyncio.AbstractEventLoop, f"EventLoop.{name} is not implemented"


def test_every_name_the_reactor_shares_with_asyncio_is_decided() -> None:
    """A method that both the Reactor and asyncio's Unix loop define resolves to the
    Reactor's only where REACTOR_BY_DESIGN says so: a method added to the Reactor
    later cannot silently shadow asyncio's (private ones included)."""
    def names(cls: type) -> set:
        return {n for k in cls.__mro__ if k is not object for n in vars(k)
                if not (n.startswith("__") and n.endswith("__"))}

    shared = names(Reactor) & names(StdlibLoop)
    assert shared, "nothing shared: this test checks nothing"
    reactors = {n for n in shared if _source(n) == "reactor"}
    assert reactors == set(REACTOR_BY_DESIGN)


def test_create_task_is_asyncio_core_s_where_it_mirrors_asyncio_s_form() -> None:
    """AsyncioCore's create_task (a Task made in C) takes the place of asyncio's only
    where asyncio's has a form it mirrors, with the same parameters; tests/aio/
    test_scheduling.py checks that it behaves as asyncio's."""
    params = tuple(inspect.signature(base_events.BaseEventLoop.create_task).parameters)
    mirrored = params in {("self", "coro", "name"), ("self", "coro", "name", "context")}
    assert _definer(EventLoop, "create_task") is (AsyncioCore if mirrored else base_events.BaseEventLoop)
    assert tuple(inspect.signature(EventLoop.create_task).parameters) == params


def test_reactor_methods_kept_behave_as_asyncio_says() -> None:
    loop = EventLoop()
    try:
        before = loop.time()
        assert isinstance(before, float)
        assert before == pytest.approx(__import__("time").monotonic(), abs=1.0)  # call_at's clock
        assert not loop.is_closed()
    finally:
        loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent


def test_coroutine_methods_are_coroutine_functions() -> None:
    """Where asyncio's method is a coroutine function, so is EventLoop's (a Reactor
    version returning a server or a transport at once would not be)."""
    for name in API:
        stdlib = getattr(StdlibLoop, name, None)
        if inspect.iscoroutinefunction(stdlib):
            assert inspect.iscoroutinefunction(getattr(EventLoop, name)), name


def test_is_an_asyncio_loop() -> None:
    loop = fasyncio.new_event_loop()
    try:
        assert type(loop) is EventLoop
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(loop, base_events.BaseEventLoop)  # aiohttp checks this
        assert isinstance(loop, fastmux.reactor.Reactor)
        assert repr(loop).startswith("<EventLoop running=False closed=False debug=")
    finally:
        loop.close()
    assert repr(loop).startswith("<EventLoop running=False closed=True")


@pytest.mark.parametrize("backend", fastmux.reactor.available_backends())
def test_every_backend_runs_a_task(backend: str, no_leaks: None) -> None:
    loop = EventLoop(backend)
    try:
        assert loop.backend == backend
        assert loop.run_until_complete(asyncio.sleep(0.001, result=backend)) == backend
    finally:
        loop.close()


async def _running_loop() -> Any:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_run_uses_a_fastmux_loop_and_closes_it(no_leaks: None) -> None:
    loop = fasyncio.run(_running_loop())
    assert type(loop) is EventLoop and loop.is_closed()


def test_run_debug(no_leaks: None) -> None:
    async def debug() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert fasyncio.run(debug(), debug=True) is True
    assert fasyncio.run(debug(), debug=False) is False


def test_run_refuses_a_running_loop(no_leaks: None) -> None:
    async def nested() -> None:
        coro = _running_loop()
        try:
            fasyncio.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        fasyncio.run(nested())


def test_policy_and_install_make_fastmux_loops(no_leaks: None) -> None:
    policy = fasyncio.EventLoopPolicy()
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert type(loop) is EventLoop
    finally:
        loop.close()
    old = asyncio.get_event_loop_policy()
    try:
        fasyncio.install()
        assert type(asyncio.get_event_loop_policy()) is fasyncio.EventLoopPolicy
        loop = asyncio.new_event_loop()
        try:
            assert type(loop) is EventLoop
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


def test_new_selector_event_loop_is_stdlibs_loop_on_fastmux_selectors(no_leaks: None) -> None:
    import fastmux.selectors as fsel

    loop = fasyncio.new_selector_event_loop()
    try:
        assert type(loop) is asyncio.SelectorEventLoop
        assert not isinstance(loop, fastmux.reactor.Reactor)
        assert isinstance(loop._selector, fsel.DefaultSelector)
        assert loop.run_until_complete(asyncio.sleep(0, result=1)) == 1
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")
def test_runner_with_fastmux_loop_factory(no_leaks: None) -> None:
    with asyncio.Runner(loop_factory=fasyncio.new_event_loop) as runner:
        loop = runner.get_loop()
        assert type(loop) is EventLoop
        assert runner.run(_running_loop()) is loop
        assert runner.run(_running_loop()) is loop  # one loop for every run
    assert loop.is_closed()
