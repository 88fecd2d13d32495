"""Fixtures for the reactor suite.

``loop`` is parametrized over the reactor's implementation (the compiled
twins, ``fastmux.reactor._loop_c`` and its compiled siblings, id prefix
``cloop``, or the pure-Python ``fastmux.reactor.loop`` and its siblings,
``pyloop``; see ``fastmux.reactor``), the selector implementation (``c``
compiled, ``py`` pure Python) and the backend: ``epoll``, ``epoll-edge``
(edge-triggered transports; skipped only when the selector has no flag
support), ``poll`` and ``select``; e.g. ``cloop-py-epoll-edge``.  Tests that
build ``Reactor()`` themselves get the default twin; the CI pass with
``FASTMUX_NO_EXTENSIONS=1`` runs them on the pure one.  Every loop records what reaches its
exception handler in ``loop.errors``; a test that expects errors takes them
out of that list, and teardown fails on any left over.  Everything a test
makes (sockets, fds, reactors) is closed at teardown, and every wait is
bounded (``run_until(..., timeout=...)``).
"""
from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
from types import ModuleType
from typing import Any, Callable, List, Optional, Tuple

import pytest

from fastmux._impl import implementations
from fastmux.reactor import Reactor

TIMEOUT = 10.0  # the bound of every wait in this suite


IMPLS = implementations("fastmux._selectors_c")
LOOP_IMPLS = implementations("fastmux.reactor._loop_c")
LOOP_MODULES = {"c": "fastmux.reactor._loop_c", "py": "fastmux.reactor.loop"}
MODES = [("epoll", False), ("epoll", True), ("poll", False), ("select", False)]
_CLASSES = {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}
LOOP_PARAMS = [(loop_impl, impl, backend, edge)
               for loop_impl in LOOP_IMPLS for impl in IMPLS for backend, edge in MODES]


def _loop_id(p: Tuple[str, str, str, bool]) -> str:
    return f"{p[0]}loop-{p[1]}-{p[2]}{'-edge' if p[3] else ''}"


def loop_module_of(reactor: Any) -> ModuleType:
    """The module (compiled or pure twin) whose ``Reactor`` this is: patch its globals."""
    return sys.modules[type(reactor).__module__]


def twin_module_of(reactor: Any, name: str) -> ModuleType:
    """The module ``name`` (``"stream"``, ``"datagram"``...) of ``reactor``'s own
    twin: ``fastmux.reactor._stream_c`` for a compiled reactor, else
    ``fastmux.reactor.stream``.  Patch its globals, check types against it."""
    if type(reactor).__module__.endswith("_c"):
        return importlib.import_module(f"fastmux.reactor._{name.lstrip('_')}_c")
    return importlib.import_module(f"fastmux.reactor.{name}")


def make_reactor(loop_impl: str, impl: str, backend: str, edge: bool) -> Reactor:
    reactor_cls = importlib.import_module(LOOP_MODULES[loop_impl]).Reactor
    mod = importlib.import_module(f"fastmux._selectors_{impl}")
    sel = getattr(mod, _CLASSES[backend])()
    try:
        reactor = reactor_cls(backend, edge=edge, selector=sel)
    except RuntimeError as exc:  # edge mode, selector without flags=
        sel.close()
        pytest.skip(str(exc))
    reactor.errors = []  # type: ignore[attr-defined]
    reactor.set_exception_handler(lambda loop, ctx: loop.errors.append(ctx))
    return reactor


@pytest.fixture(params=LOOP_PARAMS, ids=_loop_id)
def loop(request) -> Reactor:
    """A reactor: every implementation x backend x trigger mode."""
    reactor = make_reactor(*request.param)
    yield reactor
    errors = list(reactor.errors)
    if not reactor.is_closed():
        reactor.close()
    assert not errors, f"unexpected errors reported to the exception handler: {errors}"


@pytest.fixture(params=[p for p in LOOP_PARAMS if p[2] == "epoll" and p[3]], ids=_loop_id)
def edge_loop(request) -> Reactor:
    """An edge-triggered reactor (every implementation)."""
    reactor = make_reactor(*request.param)
    yield reactor
    errors = list(reactor.errors)
    reactor.close()
    assert not errors, f"unexpected errors reported to the exception handler: {errors}"


@pytest.fixture
def loop_module(loop) -> ModuleType:
    """The twin module that ``loop`` comes from (``_loop_c`` or ``loop``)."""
    return loop_module_of(loop)


@pytest.fixture
def stream_module(loop) -> ModuleType:
    """The stream transports of ``loop``'s twin (``_stream_c`` or ``stream``)."""
    return twin_module_of(loop, "stream")


@pytest.fixture
def datagram_module(loop) -> ModuleType:
    """The datagram transport of ``loop``'s twin (``_datagram_c`` or ``datagram``)."""
    return twin_module_of(loop, "datagram")


@pytest.fixture
def handles_module(loop) -> ModuleType:
    """The handles of ``loop``'s twin (``_handles_c`` or ``handles``)."""
    return twin_module_of(loop, "handles")


@pytest.fixture
def closing() -> Callable[[Any], Any]:
    """``closing(obj)`` returns obj and closes it (or the fd) at teardown."""
    things: List[Any] = []

    def keep(obj: Any) -> Any:
        things.append(obj)
        return obj

    yield keep
    for obj in reversed(things):
        try:
            if isinstance(obj, int):
                os.close(obj)
            else:
                obj.close()
        except OSError:
            pass


@pytest.fixture
def socketpair(closing) -> Callable[..., Tuple[socket.socket, socket.socket]]:
    """A factory of connected AF_UNIX stream pairs, closed at teardown."""

    def make(*args: Any) -> Tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair(*args)
        closing(a)
        closing(b)
        return a, b

    return make


@pytest.fixture
def tcp_pair(closing) -> Callable[[], Tuple[socket.socket, socket.socket]]:
    """A factory of connected loopback TCP pairs (client, server side), closed at teardown."""

    def make() -> Tuple[socket.socket, socket.socket]:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            c = closing(socket.create_connection(lsock.getsockname(), timeout=TIMEOUT))
            s, _ = lsock.accept()
            closing(s)
        return c, s

    return make


class Recorder:
    """A stream protocol that records every callback (and can echo)."""

    def __init__(self, echo: bool = False, keep_open: bool = False) -> None:
        self.echo = echo
        self.keep_open = keep_open
        self.transport: Any = None
        self.events: List[Any] = []
        self.data = bytearray()
        self.made = 0
        self.eof = 0
        self.lost: Any = None
        self.lost_count = 0
        self.failed: Any = None
        self.failed_count = 0
        self.paused = 0
        self.resumed = 0
        self.thread: Optional[int] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made += 1
        self.thread = threading.get_ident()
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.events.append(("data", len(data)))
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> Any:
        self.eof += 1
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: Any) -> None:
        self.lost = exc if exc is not None else "clean"
        self.lost_count += 1
        self.events.append(("lost", exc))

    def connection_failed(self, exc: Any) -> None:
        self.failed = exc
        self.failed_count += 1
        self.events.append(("failed", exc))

    def pause_writing(self) -> None:
        self.paused += 1
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.resumed += 1
        self.events.append("resume")


@pytest.fixture
def recorder() -> type:
    return Recorder


@pytest.fixture(params=["socket", "fd"])
def handle(request) -> Callable[[Any], Any]:
    """Every add_reader/add_writer call is tested with a file object and with its raw fd."""
    if request.param == "socket":
        return lambda obj: obj
    return lambda obj: obj if isinstance(obj, int) else obj.fileno()
