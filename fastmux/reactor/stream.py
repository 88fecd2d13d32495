"""Stream transports: TCP and Unix connections.

:class:`StreamTransport` is level-triggered; ``_EdgeStreamTransport`` is the
edge-triggered variant (drain to EAGAIN under a budget; see the essay in
``loop``).  Everything a request touches once the loop hands over an event
lives here: ``_on_io -> recv -> protocol.data_received -> write -> send``.

The compiled twin
-----------------

Compiled into ``_stream_c`` (typed by ``src/fastmux/reactor/_stream_c.pxd``),
both classes are extension types whose base is the compiled
``_transport_c.BaseTransport``; the hot methods are ``cpdef``.  The twins
differ in ``if cython.compiled:`` branches: the imports (each twin takes its
siblings' matching twins; see ``fastmux.reactor``), and the reads of
``_on_io`` and ``_drain`` and the send of ``write``, which compiled are the
system calls themselves (``_sock_recv``/``_sock_send``, C helpers defined in
the .pxd: the socket methods' argument parsing, timeout bookkeeping and GIL
release cost more than the rest of the path).  Those helpers return what the
pure branch's ``sock.recv``/``sock.send`` do and hand the same ``OSError``
subclasses to ``_fatal_error`` as its ``except`` clauses (as values, so the
per-request path enters no try block), and both twins run the whole
reactor suite (``tests/reactor``).  Whatever tests patch stays a module
global (``MAX_READ``, ``_sigpipe_ignored``).

asyncio's streams
-----------------

For a protocol that is exactly asyncio's ``StreamReaderProtocol`` (what
``asyncio.start_server``/``open_connection`` make), the transport feeds its
``StreamReader`` itself (``_feed_reader``): compiled, the four Python frames
that asyncio runs per chunk become C calls.  Subclasses, and readers that are
not exactly ``asyncio.StreamReader``, get their own methods.

Writes and back-pressure
------------------------

``write`` sends at once when nothing is queued and queues only the rest
(a ``memoryview`` of it, not a copy).  Queued buffers go out in one
``sendmsg`` gather (up to IOV_MAX) per flush, and ``sendfile`` items are
queued in order between them and sent with ``os.sendfile`` (zero-copy).
Sends use MSG_NOSIGNAL, and ``os.sendfile`` is used only while SIGPIPE is
ignored (Python's default): a program that restored SIG_DFL gets the
``pread`` + ``send(MSG_NOSIGNAL)`` path instead, so SIGPIPE never kills the
process.  Above the high-water mark the protocol gets ``pause_writing``;
below the low-water mark, ``resume_writing``.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import types
from typing import TYPE_CHECKING, Any, Dict, Optional

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

from ._errors import SENDFILE_FALLBACK_ERRNOS

if cython.compiled:  # the compiled twin's siblings; _stream_c.pxd cimports BaseTransport
    from ._fdwatch_c import EPOLLET, EVENT_READ, EVENT_WRITE, fileno_of
else:
    from ._fdwatch import EPOLLET, EVENT_READ, EVENT_WRITE, fileno_of
    from ._transport import BaseTransport
if cython.compiled:  # the compiled handles, which the loop reads in C
    from ._handles_c import Handle
else:
    from .handles import Handle

if TYPE_CHECKING:
    from .loop import Reactor

__all__ = ["StreamTransport"]

READ_BUDGET = 16  # edge-triggered: recv calls per fd per iteration before re-queueing
# Bytes asked of one recv.  sock.recv(n) allocates n bytes and shrinks the
# result; above glibc's mmap/trim thresholds (128 KiB) that allocation costs
# syscalls and page faults: measured on a 64-byte message, recv(256 KiB) took
# 7-25 us against 3 us for recv(64 KiB).  recv_into a reused buffer plus the
# copy out was slower still (4.5 us): Python needs a bytes object anyway.
MAX_READ = 64 * 1024
SENDFILE_MAX = 1 << 30  # bytes asked of one os.sendfile
try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16
MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
# Bytes sent just before a file range say "more follows": the kernel then puts
# them in the file's first segment instead of a small packet of their own
# (nginx's tcp_nopush, per send).  At 1 MiB over loopback, a response head in
# its own packet halved what wrk could fetch per second.
MSG_MORE = getattr(socket, "MSG_MORE", 0)
_SHUT_WR = socket.SHUT_WR
_SIGPIPE = getattr(signal, "SIGPIPE", None)


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)  # our own copy: the caller may reuse its buffer
    raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}")


def _is_buffered(protocol: Any) -> bool:
    """Whether ``protocol`` reads through ``get_buffer``/``buffer_updated``: asyncio's
    rule (an ``asyncio.BufferedProtocol``, looked up only if asyncio is loaded), and for
    protocols that do not derive from asyncio's, ``get_buffer`` without ``data_received``."""
    aio = sys.modules.get("asyncio.protocols")
    if aio is not None and isinstance(protocol, aio.BufferedProtocol):
        return True
    return hasattr(protocol, "get_buffer") and not hasattr(protocol, "data_received")


def _stream_reader_type(protocol: Any) -> Any:
    """``asyncio.StreamReader`` if ``protocol`` is exactly asyncio's ``StreamReaderProtocol``
    (whose ``data_received`` ``_feed_reader`` does), else None.  A subclass may override
    anything, so it gets its own ``data_received``; so does every protocol while a mock
    or tracer has replaced one of the methods ``_feed_reader`` stands for on asyncio's
    classes.  Looked up only if asyncio.streams is loaded."""
    aio = sys.modules.get("asyncio.streams")
    if aio is None or type(protocol) is not aio.StreamReaderProtocol:
        return None
    reader_type = aio.StreamReader
    stood_for = (aio.StreamReaderProtocol.__dict__.get("data_received"),
                 getattr(aio.StreamReaderProtocol.__dict__.get("_stream_reader"), "fget", None),
                 reader_type.__dict__.get("feed_data"), reader_type.__dict__.get("_wakeup_waiter"))
    for f in stood_for:
        if getattr(getattr(f, "__code__", None), "co_filename", None) != aio.__file__:
            return None
    return reader_type


def _feed_reader(protocol: Any, reader_type: Any, data: bytes) -> bool:
    """Do what ``protocol.data_received(data)`` does for asyncio's streams: True, or False,
    having done nothing, unless the protocol's reader is exactly ``reader_type``.

    Per chunk, asyncio's own runs four Python frames: ``data_received``, the
    ``_stream_reader`` property (a weakref), ``StreamReader.feed_data`` and its
    ``_wakeup_waiter``; this is them (identical in Python 3.9-3.13), compiled into
    C with the transport.  The reader's type is checked on every chunk because a
    subclass may override ``feed_data``; with no reader (None or collected) the real
    ``data_received`` runs, which does nothing.  ``data`` is never empty here (an
    empty read is EOF), so ``feed_data``'s early return for ``b""`` cannot apply.
    """
    wr = protocol._stream_reader_wr
    reader = None if wr is None else wr()
    if type(reader) is not reader_type:
        return False
    assert not reader._eof, "feed_data after feed_eof"
    reader._buffer.extend(data)
    waiter = reader._waiter  # a read*() waiting for data: wake it
    if waiter is not None:
        reader._waiter = None
        if not waiter.cancelled():
            waiter.set_result(None)
    if reader._transport is not None and not reader._paused and len(reader._buffer) > 2 * reader._limit:
        try:
            reader._transport.pause_reading()
        except NotImplementedError:
            reader._transport = None  # it cannot pause: buffer everything, and stop trying
        else:
            reader._paused = True
    return True


def _sigpipe_ignored() -> bool:
    if _SIGPIPE is None:
        return True
    try:
        return signal.getsignal(_SIGPIPE) == signal.SIG_IGN
    except (ValueError, OSError):  # pragma: no cover
        return False


class _FileChunk:
    """A queued ``sendfile``: the transport's own dup of the fd, a range."""

    __slots__ = ("fd", "offset", "remaining", "owned", "copy")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.remaining = count
        self.owned = False
        self.copy = not _sigpipe_ignored()  # os.sendfile cannot say MSG_NOSIGNAL

    def close(self) -> None:
        if self.owned:
            self.owned = False
            os.close(self.fd)


class StreamTransport(BaseTransport):
    """A TCP or Unix stream connection (level-triggered; see ``_EdgeStreamTransport``).

    The asyncio transport shape: ``write``, ``writelines``, ``sendfile``,
    ``write_eof``, ``close`` (flushes first), ``abort``, ``pause_reading`` /
    ``resume_reading``, write-buffer limits, ``get_extra_info``.
    """

    __slots__ = (
        "_data_received", "_pass_protocol", "_reader_type", "_server", "_extra", "_peer", "_reading", "_read_closed",
        "_eof_written", "_connecting", "_connector", "_wopen", "_buffered", "_flushed", "max_read_size",
    )

    # asyncio's start_tls() may wrap it (asyncio's sslproto over this transport)
    _start_tls_compatible = True

    def __init__(self, loop: Reactor, protocol: Any, sock: Optional[socket.socket] = None, *,
                 server: Any = None, peer: Any = None) -> None:
        super().__init__(loop, protocol)
        self._data_received: Any = None  # the protocol's, looked up once it is connected
        self._pass_protocol = False  # _data_received is its class's function: call it with the protocol
        self._reader_type: Any = None  # asyncio.StreamReader: the protocol is asyncio's (_feed_reader)
        self._server = server
        self._extra: Optional[Dict[str, Any]] = None
        self._peer = peer
        self._reading = True
        self._read_closed = False
        self._eof_written = False
        self._connecting = True
        self._wopen = False  # write() may send at once: attached, no EOF written, not lost
        self._buffered = False  # the protocol is a BufferedProtocol (see _read_buffered)
        # Called once with None when the write queue empties, or with the error
        # when the queue is dropped; while it is set, only its owner may write
        # (the asyncio face's sendfile waits with it).
        self._flushed: Any = None
        self._connector: Any = None
        self.max_read_size = MAX_READ  # bytes asked of one recv; per transport, read at creation
        if sock is not None:
            self._attach(sock)

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else (
            "connecting" if self._connecting else "open"))
        return f"<{type(self).__name__} fd={self._fd} {state} buffered={self._wsize}>"

    # -- lifecycle -----------------------------------------------------------------

    def _attach(self, sock: socket.socket) -> None:
        """Take a connected, non-blocking socket (``_connection_made`` starts it)."""
        self._own(sock)
        self._connecting = False
        self._wopen = not self._eof_written
        self._connector = None

    def _connection_made(self) -> None:
        if self._conn_lost:
            return
        self._made = True
        protocol = self._protocol
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
            return
        if self._conn_lost:
            return
        self._use_protocol(self._protocol)  # looked up once, after connection_made
        if self._wq:  # written before the connection was up
            self._write_ready()
        elif self._eof_written:  # write_eof() before the connection was up
            self._shutdown_write()
        if not self._conn_lost:
            self._update()

    def _update(self) -> None:
        """Level-triggered: make the selector's interest match what we want."""
        if self._conn_lost or self._sock is None:
            return
        ev = 0
        if self._reading and not self._read_closed and not self._closing:
            ev = EVENT_READ
        if self._wq:
            ev |= EVENT_WRITE
        old = self._events
        if ev == old:
            return
        self._events = ev
        try:
            if old == 0:
                self._watch.register(self._fd, ev, self)
            elif ev == 0:
                self._watch.unregister(self._fd)
            else:
                self._watch.modify(self._fd, ev, self)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc, "registering with the selector")

    # -- the hot path ----------------------------------------------------------------

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ and self._events & EVENT_READ:
            if self._buffered:
                self._read_buffered()
                data = None  # delivered (or not) already
            # the per-request path: one recv, straight to the protocol
            elif cython.compiled:
                # recv(2) itself; None: EAGAIN, or failed and already reported
                # (no try block here: entering one costs on every request)
                data = _sock_recv(self, self.max_read_size)
            else:
                try:
                    data = self._sock.recv(self.max_read_size)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as exc:
                    self._fatal_error(exc, "recv")
                    return
            if data:
                self._deliver(data)
            elif data is not None:
                self._eof()
        if mask & EVENT_WRITE and self._wq:
            self._write_ready()

    def _deliver(self, data: bytes) -> None:
        """``protocol.data_received(data)``, or for asyncio's streams what it does."""
        try:
            reader_type = self._reader_type
            if reader_type is None or not _feed_reader(self._protocol, reader_type, data):
                if self._pass_protocol:
                    self._data_received(self._protocol, data)
                elif self._data_received is not None:
                    self._data_received(data)
                else:
                    self._protocol.data_received(data)  # it had none: asyncio's AttributeError
        except Exception as exc:
            self._protocol_failed(exc, "data_received")

    def write(self, data: Any) -> None:
        """Send ``data`` now if the socket takes it; queue the rest."""
        if self._wopen and not self._wq and type(data) is bytes:  # compiled: a pointer compare
            # the per-request path: nothing queued, so try the socket at once
            if cython.compiled:
                n = _sock_send(self, data)  # send(2) itself; 0: EAGAIN; -1: failed, reported
                if n < 0:
                    return
            else:
                try:
                    n = self._sock.send(data, MSG_NOSIGNAL)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self._fatal_error(exc, "send")
                    return
            if n == len(data):
                return
            if n:
                data = memoryview(data)[n:]
            self._queue().append(data)
            self._wsize += len(data)
            self._update()
            if self._wsize > self._high and not self._proto_paused:
                self._pause_protocol()
            return
        self._write_slow(data)

    def _write_slow(self, data: Any) -> None:
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._flushed is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if self._conn_lost or not data:
            return
        if self._wopen and not self._wq:
            self.write(data)  # a bytes copy of a bytearray/memoryview: the fast path
            return
        self._queue().append(data)
        self._wsize += len(data)
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write several buffers; sent in one ``sendmsg`` gather when possible."""
        if self._eof_written:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        if self._flushed is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if self._conn_lost:
            return
        items = [d if d.__class__ is bytes else _as_bytes(d) for d in list_of_data]
        items = [d for d in items if d]
        if not items:
            return
        if len(items) == 1:
            self.write(items[0])
            return
        wq = self._queue()
        was_empty = not wq
        for d in items:
            wq.append(d)
            self._wsize += len(d)
        if was_empty and not self._connecting:
            try:
                self._flush()
            except OSError as exc:
                self._fatal_error(exc, "sendmsg")
                return
            if wq:
                self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def _flush(self) -> None:
        """Send queued items until the queue is empty or the socket is full.

        Raises OSError for real errors.  Level-triggered: stops at a short
        write (the kernel will say when there is room).  Edge-triggered:
        stops only at EAGAIN, the one condition that guarantees another edge.
        """
        wq = self._wq
        sock = self._sock
        edge = self._loop._edge
        while wq:
            head = wq[0]
            if head.__class__ is _FileChunk:
                if not self._send_chunk(head):
                    return
                wq.popleft()
                head.close()
                continue
            if len(wq) == 1 or wq[1].__class__ is _FileChunk:
                total = len(head)
                try:
                    n = sock.send(head, MSG_NOSIGNAL | (MSG_MORE if len(wq) > 1 else 0))  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
            else:
                bufs = []
                total = 0
                for item in wq:
                    if item.__class__ is _FileChunk or len(bufs) >= IOV_MAX:
                        break
                    bufs.append(item)
                    total += len(item)
                try:
                    n = sock.sendmsg(bufs, (), MSG_NOSIGNAL)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
            self._wsize -= n
            left = n
            while left:
                item = wq[0]
                size = len(item)
                if left >= size:
                    wq.popleft()
                    left -= size
                else:
                    wq[0] = memoryview(item)[left:]
                    left = 0
            if n < total and not edge:
                return

    def _send_chunk(self, chunk: _FileChunk) -> bool:
        """Send a queued file range; True when it is done, False when the socket is full."""
        sock = self._sock
        while chunk.remaining > 0:
            try:
                if chunk.copy:
                    data = os.pread(chunk.fd, min(chunk.remaining, MAX_READ), chunk.offset)
                    if not data:
                        self._push_held()  # the file ended early
                        break
                    n = sock.send(data, MSG_NOSIGNAL)  # type: ignore[union-attr]
                else:
                    n = os.sendfile(self._fd, chunk.fd, chunk.offset, min(chunk.remaining, SENDFILE_MAX))
                    if n == 0:
                        self._push_held()  # the file ended early
                        break
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if not chunk.copy and exc.errno in SENDFILE_FALLBACK_ERRNOS:
                    chunk.copy = True  # this (file, socket) pair cannot sendfile
                    continue
                raise
            chunk.offset += n
            chunk.remaining -= n
        chunk.remaining = 0
        return True

    def _push_held(self) -> None:
        """Send what a MSG_MORE send held back for a file that then came up
        short: uncorking a TCP socket pushes its pending frames."""
        sock = self._sock
        if MSG_MORE and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def _write_ready(self) -> None:
        try:
            self._flush()
        except OSError as exc:
            self._fatal_error(exc, "send")
            return
        if self._proto_paused and self._wsize <= self._low:
            self._resume_protocol()
        if not self._wq and not self._conn_lost:
            if self._flushed is not None:
                self._notify_flushed(None)
            if self._closing:
                self._force_close(None)
                return
            if self._eof_written:
                self._shutdown_write()
            self._update()

    def _read_buffered(self) -> bool:
        """One read for a BufferedProtocol, into the buffer it lends: True when bytes
        were delivered (False: nothing to read, EOF, or the connection failed)."""
        protocol = self._protocol
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except Exception as exc:
            self._protocol_failed(exc, "get_buffer")
            return False
        try:
            n = self._sock.recv_into(buf)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._fatal_error(exc, "recv_into")
            return False
        if not n:
            self._eof()
            return False
        try:
            protocol.buffer_updated(n)
        except Exception as exc:
            self._protocol_failed(exc, "buffer_updated")
            return False
        return True

    def _eof(self) -> None:
        self._read_closed = True
        self._update()  # level-triggered: EOF stays readable forever, stop watching
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_failed(exc, "eof_received")
            return
        if not keep_open:
            self.close()

    # -- the rest of the transport API -------------------------------------------------

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None, *, head: bytes = b"") -> None:
        """Queue ``count`` bytes (default: to the end) of ``file`` from ``offset``, zero-copy.

        ``file`` is an object with fileno() or an fd; its position is not
        used or changed.  Ordered with ``write``: bytes written before are
        sent before, bytes written after are sent after.  What cannot go at
        once is sent from the transport's own ``dup`` of the fd, so the
        caller may close ``file`` as soon as this returns.  Pending file
        bytes do not count in ``get_write_buffer_size`` (they are not in
        memory).  ``head`` (a response head, say) is written just before
        the file, as ``write(head)`` would, but shares its first segment.
        """
        if self._eof_written:
            raise RuntimeError("Cannot call sendfile() after write_eof()")
        if self._flushed is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if self._conn_lost:
            return
        fd = fileno_of(file)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count <= 0:
            if head:
                self.write(head)
            return
        if head.__class__ is not bytes:
            head = _as_bytes(head)
        wq = self._queue()
        idle = not wq and not self._connecting
        if head:
            wq.append(head)
            self._wsize += len(head)
        chunk = _FileChunk(fd, offset, count)
        wq.append(chunk)
        if idle:
            try:
                self._flush()  # the head "more to follow", then the file
            except OSError as exc:
                self._fatal_error(exc, "sendfile")
                return
        if chunk.remaining:  # still queued: the caller may close its fd now
            chunk.fd = os.dup(fd)
            chunk.owned = True
        if wq:
            self._update()
        if self._wsize > self._high and not self._proto_paused:
            self._pause_protocol()

    def write_eof(self) -> None:
        """Shut down the sending side once the queue is flushed (the peer sees EOF)."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._wopen = False
        if not self._wq and not self._connecting:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(_SHUT_WR)  # type: ignore[union-attr]
        except OSError as exc:
            self._fatal_error(exc, "shutdown")

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        """Stop reading, flush what is queued, then close; ``connection_lost(None)`` follows."""
        if self._connecting and not self._closing:
            self._closing = True
            self._abandon_connect(ConnectionAbortedError("transport closed before it connected"))
            return
        super().close()

    def abort(self) -> None:
        """Close now, dropping what is queued; ``connection_lost(None)`` follows."""
        if self._connecting and not self._conn_lost:
            self._closing = True
            self._abandon_connect(ConnectionAbortedError("transport aborted before it connected"))
            return
        self._force_close(None)

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""
        if self._closing or not self._reading:
            return
        self._reading = False
        self._update()

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._update()

    def is_reading(self) -> bool:
        return self._reading and not self._closing and not self._read_closed

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        if self._made:
            self._use_protocol(protocol)

    def _use_protocol(self, protocol: Any) -> None:
        self._buffered = _is_buffered(protocol)
        # A method of the protocol's class is kept as its function, called with the
        # protocol: one object shared by every connection of that class, where the
        # bound method would be one more per connection for each request to touch.
        # Anything else (an instance attribute, a mock) is kept as it is.
        received = getattr(protocol, "data_received", None)
        self._pass_protocol = type(received) is types.MethodType and received.__self__ is protocol
        self._data_received = received.__func__ if self._pass_protocol else received
        self._reader_type = _stream_reader_type(protocol)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'``, ``'sockname'``, ``'socket'`` (the socket itself: do not close it)."""
        extra = self._extra
        if extra is not None and name in extra:
            return extra[name]
        sock = self._sock
        if sock is None:
            return default
        try:
            if name == "socket":
                value = self._loop._socket_extra(sock)
            elif name == "peername":
                value = self._peer if self._peer is not None else sock.getpeername()
            elif name == "sockname":
                value = sock.getsockname()
            else:
                return default
        except OSError:
            return default
        if extra is None:
            extra = self._extra = {}
        extra[name] = value
        return value

    # -- errors and ending -------------------------------------------------------------------

    def _protocol_failed(self, exc: BaseException, method: str) -> None:
        self._loop.call_exception_handler({"message": f"protocol.{method}() failed; aborting the connection",
                                           "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _discard_writes(self) -> None:
        self._wopen = False
        wq = self._wq
        while wq:
            item = wq.popleft()
            if item.__class__ is _FileChunk:
                item.close()
        self._wsize = 0
        if self._flushed is not None:
            self._notify_flushed(ConnectionResetError("Connection lost before the data was sent"))

    def _notify_flushed(self, exc: Optional[BaseException]) -> None:
        notify = self._flushed
        self._flushed = None
        notify(exc)

    def _release(self) -> None:
        super()._release()
        server = self._server
        self._server = None
        if server is not None:
            server._detach(self)
        self._data_received = None
        self._pass_protocol = False

    def _close_now(self) -> None:
        if self._connecting and not self._conn_lost:
            connector = self._connector
            self._conn_lost = self._closing = True
            self._connecting = False
            self._discard_writes()
            if connector is not None:
                connector.cancel()
            return
        super()._close_now()

    # -- connecting (driven by connect._Connector) ---------------------------------------

    def _abandon_connect(self, exc: BaseException) -> None:
        connector = self._connector
        if connector is not None:
            connector.cancel()
        self._connect_failed(exc)

    def _connect_failed(self, exc: BaseException) -> None:
        if not self._connecting:
            return
        self._connecting = False
        self._connector = None
        self._conn_lost = True
        self._closing = True
        self._discard_writes()
        loop = self._loop
        callback = getattr(self._protocol, "connection_failed", None)
        if callback is not None:
            loop._ready.append(Handle(callback, (exc,)))
        else:
            loop._ready.append(Handle(loop.call_exception_handler, ({
                "message": "connection failed (the protocol has no connection_failed() to tell)",
                "exception": exc, "transport": self, "protocol": self._protocol},)))


class _EdgeStreamTransport(StreamTransport):
    """Edge-triggered: registered once with EPOLLIN|EPOLLOUT|EPOLLET; drains under a budget."""

    __slots__ = ()

    def _update(self) -> None:
        # Interest is tracked in Python: the only epoll_ctl is the first one.
        if self._events or self._conn_lost or self._sock is None:
            return
        self._events = EVENT_READ | EVENT_WRITE
        try:
            self._watch.register(self._fd, EVENT_READ | EVENT_WRITE, self, EPOLLET)
        except OSError as exc:
            self._events = 0
            self._fatal_error(exc, "registering with the selector")

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ and not self._io_requeued:
            self._drain()
        if mask & EVENT_WRITE and self._wq:
            self._write_ready()

    def _io_retry(self) -> None:
        self._io_requeued = False
        if not self._conn_lost:
            self._drain()

    def _drain(self) -> None:
        budget = READ_BUDGET
        sock = self._sock
        size = self.max_read_size
        while self._reading and not self._read_closed and not self._closing:
            if not budget:
                self._loop._requeue_io(self)  # the kernel will not tell us again
                return
            budget -= 1
            if self._buffered:
                if self._read_buffered():
                    continue
                return
            if cython.compiled:
                data = _sock_recv(self, size)
                if data is None:
                    return  # EAGAIN: drained (or failed and reported)
            else:
                try:
                    data = sock.recv(size)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    self._fatal_error(exc, "recv")
                    return
            if not data:
                self._eof()
                return
            self._deliver(data)  # a failed protocol closes the transport: the loop ends

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        if not self._read_closed and self._made:
            # the edge that came while we were paused is gone: look ourselves
            self._loop._requeue_io(self)
