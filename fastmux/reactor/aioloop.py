"""asyncio's face of the reactor: :class:`EventLoop`, an ``asyncio.AbstractEventLoop``.

One loop, two faces.  ``EventLoop`` *is* a :class:`~fastmux.reactor.Reactor`
(through ``_aiocore.AsyncioCore``): its iteration, ready queue, timer heap,
fd dispatch and stream transports are the reactor's compiled ones.  What an
asyncio program does per request therefore runs in C up to its own code:
``recv`` -> ``protocol.data_received`` (a ``StreamReader`` feeding a task,
an ``asyncio.Protocol``...) -> ``transport.write`` -> ``send``, and the
``call_soon`` with which futures wake their tasks.

The rest of asyncio's API is asyncio's own code, inherited from the stdlib's
Unix selector loop and running on top of the reactor through a few hooks:

* ``_make_socket_transport`` makes the reactor's ``StreamTransport`` (with
  asyncio's extra info, waiter and ``Server`` bookkeeping), so
  ``create_connection``/``create_server``/``start_server`` and streams use
  it; ``_make_ssl_transport`` puts asyncio's ``sslproto`` on top of one;
* ``_add_reader``/``_add_writer``/``_remove_*`` go to the reactor's
  add_reader table, so everything asyncio drives by readiness (accepting,
  ``sock_*``, datagram and pipe transports, subprocesses, the signal
  self-pipe) is dispatched by the reactor's fd watch;
* resolution, happy eyeballs, ``sendfile``'s fallback, TLS, subprocesses,
  executors, async generators, signal handling and the exception handler
  are asyncio's, unchanged.

Where the reactor and asyncio both define a method, the class below says
which one it takes; ``tests/aio/test_loop_api.py`` checks that every
public ``AbstractEventLoop`` method resolves to asyncio's semantics.

Only the level-triggered reactor is used: asyncio code may read part of
what is available and expects to be told again.
"""
from __future__ import annotations

import functools
import inspect
import io
import os
import socket
from asyncio import base_events, events, exceptions, sslproto, trsock, unix_events
from typing import Any, Optional

from .._impl import load_twin

_core = load_twin("fastmux.reactor._aiocore_c", "fastmux.reactor._aiocore")
if _core.__name__.endswith("_c"):  # the transport and constants of the same twin as the loop
    from ._fdwatch_c import EVENT_READ, EVENT_WRITE
    from ._stream_c import StreamTransport
else:
    from ._fdwatch import EVENT_READ, EVENT_WRITE
    from .stream import StreamTransport

__all__ = ["EventLoop"]

_Asyncio = unix_events._UnixSelectorEventLoop

# asyncio.Server counts its connections: _attach()/_detach() until 3.12,
# _attach(transport)/_detach(transport) from 3.13 (which also tracks them).
_SERVER_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1


class _ServerLink:
    """What a transport calls ``_detach(transport)`` on, for an asyncio.Server whose
    ``_detach()`` takes no argument."""

    __slots__ = ("server",)

    def __init__(self, server: Any) -> None:
        self.server = server

    def _detach(self, transport: Any) -> None:
        self.server._detach()


def _settle(fut: Any, exc: Optional[BaseException]) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


def _start_transport(transport: Any, waiter: Any) -> None:
    transport._connection_made()
    if waiter is not None and not waiter.cancelled():
        waiter.set_result(None)


class EventLoop(_core.AsyncioCore, _Asyncio):  # type: ignore[misc]
    """An asyncio event loop on fastmux's compiled reactor.

    ``backend``: ``"epoll"``, ``"poll"`` or ``"select"`` (default: the best
    available).  The reactor's own extras (``statistics()``, ``backend``)
    are there too.
    """

    def __init__(self, backend: Optional[str] = None) -> None:
        _core.AsyncioCore.__init__(self, backend)
        # asyncio's own state (task factory, async generators, executor
        # flags, the signal self-pipe, the transports table...), set by
        # asyncio itself so that every version gets what its methods use.
        # The selector it is handed is the reactor's, for introspection
        # only: nothing here polls it but the reactor.
        _Asyncio.__init__(self, self._watch.selector)

    # -- where both define it: asyncio's semantics ------------------------------------

    run_forever = _Asyncio.run_forever
    is_running = _Asyncio.is_running
    stop = _Asyncio.stop
    set_exception_handler = _Asyncio.set_exception_handler
    get_exception_handler = _Asyncio.get_exception_handler
    default_exception_handler = _Asyncio.default_exception_handler
    call_exception_handler = _Asyncio.call_exception_handler
    add_reader = _Asyncio.add_reader
    add_writer = _Asyncio.add_writer
    remove_reader = _Asyncio.remove_reader
    remove_writer = _Asyncio.remove_writer
    add_signal_handler = _Asyncio.add_signal_handler
    remove_signal_handler = _Asyncio.remove_signal_handler
    set_default_executor = _Asyncio.set_default_executor
    run_in_executor = _Asyncio.run_in_executor
    create_server = _Asyncio.create_server
    create_unix_server = _Asyncio.create_unix_server
    create_connection = _Asyncio.create_connection
    create_unix_connection = _Asyncio.create_unix_connection
    create_datagram_endpoint = _Asyncio.create_datagram_endpoint
    __repr__ = _Asyncio.__repr__
    __del__ = _Asyncio.__del__

    def close(self) -> None:
        """asyncio's close (signal handlers, the self-pipe, the default executor),
        then the reactor's: its transports are aborted and the fd watch closed."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._close_self_pipe()
        self._executor_shutdown_called = True
        executor = self._default_executor
        self._default_executor = None
        if executor is not None:
            executor.shutdown(wait=False)
        _core.AsyncioCore.close(self)
        self._selector = None  # what asyncio's own close leaves (pipe transports' repr reads it)

    # -- the hooks through which asyncio's code runs on the reactor ---------------------

    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, None)
        self._fdcb.add(fd, EVENT_READ, handle)
        return handle

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, None)
        self._fdcb.add(fd, EVENT_WRITE, handle)
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        return not self._closed and self._fdcb.remove(fd, EVENT_READ)

    def _remove_writer(self, fd: Any) -> bool:
        return not self._closed and self._fdcb.remove(fd, EVENT_WRITE)

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        _Asyncio._ensure_fd_no_transport(self, fd)  # asyncio's own transports, and bad fds
        owner = self._owners.get(fd if isinstance(fd, int) else int(fd.fileno()))
        if owner is not None and not owner.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {owner!r}")

    def _socket_extra(self, sock: socket.socket) -> Any:
        """asyncio's ``get_extra_info("socket")``: a wrapper that refuses to close or
        block the transport's socket (made once per transport, when asked for)."""
        return trsock.TransportSocket(sock)

    def _make_socket_transport(self, sock: socket.socket, protocol: Any, waiter: Any = None, *,
                               extra: Any = None, server: Any = None) -> StreamTransport:
        base_events._set_nodelay(sock)
        link = None
        if server is not None:
            link = server if _SERVER_TAKES_TRANSPORT else _ServerLink(server)
        transport = StreamTransport(self, protocol, sock, server=link)
        if server is not None:
            if _SERVER_TAKES_TRANSPORT:
                server._attach(transport)
            else:
                server._attach()
        # socket, sockname and peername are made when first asked for (an idle
        # connection then holds no dict, tuples or wrapper: ~500 bytes); the
        # peer address that accept() returned is kept as it is
        if extra:
            extra = dict(extra)
            if "peername" in extra:
                transport._peer = extra.pop("peername")
            if extra:
                transport._extra = extra
        self.call_soon(_start_transport, transport, waiter)
        return transport

    async def sendfile(self, transport: Any, file: Any, offset: int = 0, count: Optional[int] = None, *,
                       fallback: bool = True) -> int:
        """asyncio's ``loop.sendfile``; on a reactor transport the file goes out with
        the transport's own zero-copy ``sendfile`` (``os.sendfile`` from a dup of
        the fd), and a file without an fd is copied through ``write``."""
        if not isinstance(transport, StreamTransport):  # e.g. a TLS transport: asyncio's way
            return await _Asyncio.sendfile(self, transport, file, offset, count, fallback=fallback)
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        self._check_sendfile_params(transport._sock, file, offset, count)
        try:
            return await self._sendfile_native(transport, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sendfile_by_copy(transport, file, offset, count)

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: Optional[int]) -> int:
        try:
            fileno = file.fileno()
            size = os.fstat(fileno).st_size
        except (AttributeError, io.UnsupportedOperation, OSError) as exc:
            raise exceptions.SendfileNotAvailableError("not a regular file") from exc
        count = max(0, size - offset) if count is None else min(count, max(0, size - offset))
        if not count:
            return 0
        await self._until_flushed(transp)  # what was written before goes first
        transp.sendfile(fileno, offset, count)
        chunk = transp._wq[-1] if transp._wq else None  # the file's part still queued
        try:
            await self._until_flushed(transp)
        finally:
            sent = count - (chunk.remaining if chunk is not None else 0)
            if sent:
                file.seek(offset + sent)
        return sent

    async def _sendfile_by_copy(self, transport: Any, file: Any, offset: int, count: Optional[int]) -> int:
        if offset:
            file.seek(offset)
        total = 0
        try:
            while count is None or total < count:
                size = 65536 if count is None else min(65536, count - total)
                data = await self.run_in_executor(None, file.read, size)
                if not data:
                    break
                await self._until_flushed(transport)
                transport.write(data)
                total += len(data)
            await self._until_flushed(transport)
        finally:
            if total:
                file.seek(offset + total)
        return total

    async def _until_flushed(self, transport: Any) -> None:
        """Wait until ``transport`` has sent everything queued (only its owner may write
        meanwhile); ConnectionResetError if the connection is lost first."""
        if transport._conn_lost:
            raise ConnectionResetError("Connection lost")
        if transport._wq:
            fut = self.create_future()
            transport._flushed = functools.partial(_settle, fut)
            await fut

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: Any, sslcontext: Any, waiter: Any = None, *,
                            server_side: bool = False, server_hostname: Optional[str] = None,
                            extra: Any = None, server: Any = None, **options: Any) -> Any:
        # asyncio's TLS protocol over a reactor transport (``options``: the
        # handshake/shutdown timeouts this Python's SSLProtocol takes)
        ssl_protocol = sslproto.SSLProtocol(self, protocol, sslcontext, waiter, server_side, server_hostname,
                                            **options)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport
