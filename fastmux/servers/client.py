"""``fastmux client tcp|udp HOST:PORT``: the tutorial's interactive clients.

Like the tutorial's clients, it sends what you type and prints what comes
back, but stdin and the socket are both watched by the reactor, so replies
show up as they arrive instead of only after the next input.

``tcp``: each line typed goes out as is (with its newline); after ``exit``
or the end of stdin the client half-closes and waits (``--linger``) for the
server to finish.  ``udp``: each line, stripped, is one datagram; ``exit``
ends, as in the tutorial's UDP sender.  Exit status: 0, 1 if the
connection failed or was reset, 130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable, Optional

from .._subcommands import add_subcommands
from . import _net
from ._runtime import AsyncioRuntime, ReactorRuntime, Runtime


_MODES = {
    "tcp": "TCP (or unix:PATH) line client: lines go out as typed; `exit` or the end of input "
           "half-closes, then it waits --linger seconds for the server's last words",
    "udp": "UDP client: each line typed, stripped, is one datagram; `exit` ends",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, "mode", "MODE", {mode: (help_, _mode_arguments) for mode, help_ in _MODES.items()})


def _mode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="HOST:PORT", help="server address ([::1]:PORT and unix:PATH work too)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="connect timeout (default: %(default)s)")
    parser.add_argument("--linger", type=float, default=2.0, metavar="SECONDS",
                        help="after exit/end of input, wait this long for the server's last words "
                             "(default: %(default)s)")
    parser.add_argument("--backend", choices=("epoll", "poll", "select"), help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="fastmux", choices=("fastmux", "asyncio"), help=argparse.SUPPRESS)
    parser.set_defaults(_run=run)


class _Output:
    """Prints the server's bytes as they come (raw for tcp, one datagram a line for udp)."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client.connected(transport)

    def data_received(self, data: bytes) -> None:
        self.client.out(data)

    def eof_received(self) -> bool:
        return False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client.out(data if data.endswith(b"\n") else data + b"\n")

    def error_received(self, exc: Exception) -> None:
        self.client.error = f"{exc.strerror or exc}"  # e.g. nobody listening on that UDP port

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if exc is not None:
            self.client.error = str(exc)
        self.client.finish()


class Client:
    def __init__(self, runtime: Runtime, udp: bool, linger: float, stdin_fd: int = 0,
                 write: Optional[Callable[[bytes], None]] = None) -> None:
        self.runtime = runtime
        self.udp = udp
        self.linger = linger
        self.stdin_fd = stdin_fd
        self._write = write or _stdout_write
        self.transport: Any = None
        self.error: Optional[str] = None
        self._pending = b""
        self._done = False
        self._reading = False
        self._thread: Optional[threading.Thread] = None

    def out(self, data: bytes) -> None:
        self._write(data)

    def start(self, sock: socket.socket) -> None:
        factory = lambda: _Output(self)  # noqa: E731
        if self.udp:
            sock.setblocking(False)
            self.transport = self.runtime.serve_datagram(factory, sock)
        else:
            self.transport = self.runtime.connect(factory, sock)

    def connected(self, transport: Any) -> None:
        """Read stdin only now: nothing may be written before ``connection_made``."""
        self.transport = transport
        if self._done:
            return
        try:
            self.runtime.add_reader(self.stdin_fd, self._on_stdin)
            self._reading = True
        except (OSError, ValueError):
            # A regular file or /dev/null cannot be polled: read it in a thread.
            self._thread = threading.Thread(target=self._stdin_thread, daemon=True)
            self._thread.start()

    def _on_stdin(self) -> None:
        try:
            data = os.read(self.stdin_fd, 65536)
        except BlockingIOError:
            return
        self._input(data)

    def _stdin_thread(self) -> None:
        while True:
            try:
                data = os.read(self.stdin_fd, 65536)
            except OSError:
                data = b""
            try:
                self.runtime.call_soon_threadsafe(self._input, data)
            except RuntimeError:  # the loop is closed: we are exiting
                return
            if not data:
                return

    def _input(self, data: bytes) -> None:
        if self._done:
            return
        if not data:
            return self._end_of_input()
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if self._line(line):
                return self._end_of_input()

    def _line(self, line: bytes) -> bool:
        """Send one line; True after ``exit``."""
        if self.udp:
            text = line.strip()
            if text == b"exit":
                return True
            if text:
                self.transport.sendto(text)
            return False
        self.transport.write(line + b"\n")
        return line.strip() == b"exit"

    def _end_of_input(self) -> None:
        if self._reading:
            self.runtime.remove_reader(self.stdin_fd)
            self._reading = False
        if self._pending and not self.udp:
            self.transport.write(self._pending)
        elif self._pending:
            self._line(self._pending)
        self._pending = b""
        if not self.udp and self.transport.can_write_eof():
            self.transport.write_eof()
        self.runtime.call_later(self.linger, self.finish)

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._reading:
            self.runtime.remove_reader(self.stdin_fd)
            self._reading = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.runtime.call_soon(self.runtime.stop)


def _stdout_write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def run(args: argparse.Namespace) -> int:
    udp = args.mode == "udp"
    try:
        sock = _net.connect(args.target, udp=udp, timeout=args.timeout)
    except (OSError, ValueError) as exc:
        print(f"fastmux client: cannot connect to {args.target}: {exc}", file=sys.stderr)
        return 1
    runtime = ReactorRuntime(backend=args.backend) if args.loop == "fastmux" else AsyncioRuntime()
    client = Client(runtime, udp, args.linger)
    interrupted = []

    def on_sigint() -> None:
        interrupted.append(True)
        client.finish()

    try:
        client.start(sock)
        runtime.add_signal_handler(signal.SIGINT, on_sigint)
        runtime.run_forever()
    finally:
        if client.transport is not None:
            client.transport.close()
        runtime.close()
        sock.close()
    if client.error:
        print(f"fastmux client: {client.error}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0
