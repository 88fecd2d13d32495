"""Fixtures shared by every suite: each compiled path runs the same tests as
its pure-Python twin, on every backend (ids ``c-epoll``, ``py-poll``, ...);
and the session fails if any process it started is still running at its end."""
from __future__ import annotations

import importlib
from multiprocessing import resource_tracker
from types import ModuleType
from typing import Iterator

import pytest

from fastmux._impl import implementations
from support import procs

BACKENDS = ("epoll", "poll", "select")


IMPLS = implementations("fastmux._selectors_c")


def _module(kind: str, impl: str) -> ModuleType:
    return importlib.import_module(f"fastmux._{kind}_{impl}")


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    return request.param


@pytest.fixture
def pollers(impl) -> ModuleType:
    """The pollers module of one implementation."""
    return _module("pollers", impl)


@pytest.fixture
def selectors_mod(impl) -> ModuleType:
    """The selectors module of one implementation."""
    return _module("selectors", impl)


_POLLER_CLASS = {"epoll": "Epoll", "poll": "Poll", "select": "Select"}
_SELECTOR_CLASS = {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}


@pytest.fixture(params=[(i, b) for i in IMPLS for b in BACKENDS], ids=lambda p: f"{p[0]}-{p[1]}")
def impl_backend(request):
    return request.param


@pytest.fixture
def poller_cls(impl_backend):
    """A poller class: every implementation x backend."""
    impl, backend = impl_backend
    return getattr(_module("pollers", impl), _POLLER_CLASS[backend])


@pytest.fixture
def selector_cls(impl_backend):
    """A selector class: every implementation x backend."""
    impl, backend = impl_backend
    return getattr(_module("selectors", impl), _SELECTOR_CLASS[backend])


@pytest.fixture
def stdlib_selector_cls(impl_backend):
    """The stdlib twin of ``selector_cls``, for differential tests."""
    import selectors

    return getattr(selectors, _SELECTOR_CLASS[impl_backend[1]])


@pytest.fixture(params=IMPLS)
def epoll_selector_cls(request):
    """EpollSelector of every implementation (for epoll-only features)."""
    return _module("selectors", request.param).EpollSelector


def pytest_configure(config) -> None:
    procs.become_subreaper()  # before any test starts a process


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every process the session started, down to a server's pool workers and
    resource tracker, has ended by the end of the session (the stragglers
    are killed, and reported as an error of the session's last test)."""
    yield
    # The session's own multiprocessing resource tracker (tests that run a
    # process pool in this process start it) would end with this process;
    # ending it here, as multiprocessing does at exit, leaves only strays.
    resource_tracker._resource_tracker._stop()
    left = procs.kill_leftovers(grace=5.0)
    assert not left, "processes left running by the tests (killed now):\n" + "\n".join(left)

