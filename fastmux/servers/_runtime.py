"""The few loop operations the servers use whose shape differs between loops.

The protocols in this package are written to the asyncio protocol/transport
shape, which ``fastmux.Reactor`` shares, and they touch the loop itself only
through ``loop.time()``, ``loop.call_later()`` and ``loop.call_soon()``, which
are the same on both.  What differs is where asyncio has coroutines (making
servers and connections) and ``run_in_executor`` (asyncio returns an asyncio
future; the reactor takes ``done=`` and calls it on the loop thread).  Those
few operations live here, so every protocol runs on either loop: the CLI
always uses the reactor, the tests also run the protocols on asyncio.
"""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor


class Runtime:
    """A loop plus the operations the servers need; see the module docstring."""

    name = "abstract"
    loop: Any

    def serve(self, factory: Callable[[], Any], sock: socket.socket) -> Any:
        """Start accepting on a listening socket; returns an object with ``close()``."""
        raise NotImplementedError

    def serve_datagram(self, factory: Callable[[], Any], sock: socket.socket) -> Any:
        """Start a datagram endpoint on a bound socket; returns its transport."""
        raise NotImplementedError

    def connect(self, factory: Callable[[], Any], sock: socket.socket) -> Any:
        """Wrap an already connected socket; returns the transport."""
        raise NotImplementedError

    def offload(self, executor: Optional[Executor], func: Callable[..., Any], *args: Any,
                done: Callable[[Any], None]) -> None:
        """Run ``func(*args)`` in ``executor``; ``done(future)`` runs on the loop thread."""
        raise NotImplementedError

    # The rest has one spelling on every loop.
    def time(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_later(delay, callback, *args)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_soon(callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call_soon_threadsafe(callback, *args)

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.add_signal_handler(sig, callback, *args)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> None:
        self.loop.remove_reader(fd)

    def run_forever(self) -> None:
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.stop()

    def close(self) -> None:
        self.loop.close()


class AsyncioRuntime(Runtime):
    """asyncio (or uvloop): used by the tests to check the protocols on a second loop.

    ``serve``/``serve_datagram``/``connect`` run the coroutine to completion,
    so call them before ``run_forever`` (setup), as the CLI does.
    """

    name = "asyncio"

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if loop is None:
            import asyncio  # here: a reactor-only process need not load it

            loop = asyncio.new_event_loop()
        self.loop = loop

    def serve(self, factory, sock):
        return self.loop.run_until_complete(self.loop.create_server(factory, sock=sock))

    def serve_datagram(self, factory, sock):
        transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(factory, sock=sock))
        return transport

    def connect(self, factory, sock):
        sock.setblocking(False)
        transport, _ = self.loop.run_until_complete(self.loop.create_connection(factory, sock=sock))
        return transport

    def offload(self, executor, func, *args, done):
        self.loop.run_in_executor(executor, func, *args).add_done_callback(done)


class ReactorRuntime(Runtime):
    """fastmux's own reactor: what every ``fastmux serve`` process runs on."""

    name = "fastmux"

    def __init__(self, backend: Optional[str] = None, edge: bool = False, reactor: Any = None) -> None:
        if reactor is None:
            from ..reactor import Reactor

            reactor = Reactor(backend=backend, edge=edge)
        self.loop = reactor

    def serve(self, factory, sock):
        return self.loop.create_server(factory, sock=sock)

    def serve_datagram(self, factory, sock):
        result = self.loop.create_datagram_endpoint(factory, sock=sock)
        return result[0] if isinstance(result, tuple) else result

    def connect(self, factory, sock):
        sock.setblocking(False)
        result = self.loop.create_connection(factory, sock=sock)
        return result[0] if isinstance(result, tuple) else result

    def offload(self, executor, func, *args, done):
        self.loop.run_in_executor(executor, func, *args, done=done)


def reactor_available() -> Optional[str]:
    """None when ``fastmux.reactor`` imports, else why not."""
    try:
        from ..reactor import Reactor  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None

