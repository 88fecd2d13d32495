"""The echo servers fastmux is compared with.

``python -m fastmux.benchmarks.load.reference_servers KIND [--api API] [--host H] --port P``

KIND is one of:

``asyncio``, ``uvloop``, ``fastmux.asyncio``
    the same asyncio user code on each event loop: the stdlib's default loop,
    uvloop (only when installed), and whatever ``fastmux.asyncio.new_event_loop()``
    returns when the server starts.  ``--api`` picks the code:
    ``protocol`` (default) an ``asyncio.Protocol`` that writes back what it
    receives; ``streams`` ``asyncio.start_server`` with one task per
    connection that reads, writes and drains until EOF;
``selectors``
    a hand-written non-blocking loop on the stdlib ``selectors`` module, the
    way one writes a server without an event-loop framework.

Each prints ``ready HOST PORT`` once listening (``--port 0`` picks a free
port) and exits 0 on SIGTERM or SIGINT.  They are written as a competent user
would write them, neither handicapped nor tuned beyond the obvious.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import selectors
import signal
import socket
import sys
from typing import Dict, Optional, Sequence

__all__ = ["KINDS", "LOOPS", "APIS", "raise_fd_limit", "new_event_loop", "main"]

LOOPS = ("asyncio", "uvloop", "fastmux.asyncio")  # event loops that run the same asyncio code
APIS = ("protocol", "streams")                   # the asyncio code they run
KINDS = LOOPS + ("selectors",)
BACKLOG = 4096  # many-connection runs open thousands of connections at once
RECV_SIZE = 64 * 1024


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return it.

    Child processes inherit the limit, so calling this before starting
    servers lets any of them hold thousands of connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _ready(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    print(f"ready {host} {port}", flush=True)


# ---- asyncio user code, on any event loop ----


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (one of LOOPS), made as its users make one.

    ``fastmux.asyncio.new_event_loop`` is looked up at each call, so whichever
    loop fastmux ships as its asyncio loop is the one measured.
    """
    if kind == "asyncio":
        return asyncio.new_event_loop()
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind == "fastmux.asyncio":
        import fastmux.asyncio

        return fastmux.asyncio.new_event_loop()
    raise ValueError(f"unknown event loop {kind!r}; known: {', '.join(LOOPS)}")


class EchoProtocol(asyncio.Protocol):
    """Writes back everything it receives."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One task per connection: read, write back, drain, until EOF."""
    try:
        while True:
            data = await reader.read(RECV_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # reset by the peer: nothing left to echo to
    finally:
        writer.close()


async def _serve_asyncio(host: str, port: int, api: str) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    if api == "streams":
        server = await asyncio.start_server(echo_stream, host, port, backlog=BACKLOG)
    else:
        server = await loop.create_server(EchoProtocol, host, port, backlog=BACKLOG)
    _ready(server.sockets[0])
    async with server:
        await stop


def run_asyncio(host: str, port: int, loop_kind: str, api: str) -> None:
    loop = new_event_loop(loop_kind)
    try:
        loop.run_until_complete(_serve_asyncio(host, port, api))
    finally:
        loop.close()


# ---- hand-written stdlib selectors loop ----


def run_selectors(host: str, port: int) -> None:
    sel = selectors.DefaultSelector()
    # A signal's wakeup byte lands on this socketpair and stops the loop
    # (PEP 475 retries select() after a signal, so a flag alone would not).
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    listener = socket.create_server((host, port), backlog=BACKLOG)
    listener.setblocking(False)
    # Each key's data is its socket, typed, so the loop needs no casts.
    sel.register(wake_r, selectors.EVENT_READ, wake_r)
    sel.register(listener, selectors.EVENT_READ, listener)
    # Bytes a connection could not send at once; it waits for EVENT_WRITE
    # instead of reading more until they are out.
    pending: Dict[socket.socket, memoryview] = {}
    _ready(listener)

    def close(sock: socket.socket) -> None:
        sel.unregister(sock)
        pending.pop(sock, None)
        sock.close()

    try:
        while True:
            for key, mask in sel.select():
                sock: socket.socket = key.data
                if sock is wake_r:
                    return
                if sock is listener:
                    while True:
                        try:
                            conn, _addr = listener.accept()
                        except BlockingIOError:
                            break
                        conn.setblocking(False)
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sel.register(conn, selectors.EVENT_READ, conn)
                    continue
                try:
                    if mask & selectors.EVENT_WRITE:
                        out = pending[sock]
                        sent = sock.send(out)
                        if sent == len(out):
                            del pending[sock]
                            sel.modify(sock, selectors.EVENT_READ, sock)
                        else:
                            pending[sock] = out[sent:]
                        continue
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        close(sock)
                        continue
                    try:
                        sent = sock.send(data)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(data):
                        pending[sock] = memoryview(data)[sent:]
                        sel.modify(sock, selectors.EVENT_WRITE, sock)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # reset by the peer, and the like
                    close(sock)
    finally:
        signal.set_wakeup_fd(-1)
        for key in list(sel.get_map().values()):
            key.data.close()
        sel.close()
        wake_w.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastmux.benchmarks.load.reference_servers",
        description="run one of the echo servers fastmux is compared with",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--api", choices=APIS,
                        help="the asyncio code the event loops run (default protocol)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("uvloop is not installed")
    if args.kind == "selectors" and args.api is not None:
        parser.error("--api applies to the event loops, not to the selectors server")
    raise_fd_limit()
    if args.kind == "selectors":
        run_selectors(args.host, args.port)
    else:
        run_asyncio(args.host, args.port, args.kind, args.api or "protocol")
    return 0


if __name__ == "__main__":
    sys.exit(main())
