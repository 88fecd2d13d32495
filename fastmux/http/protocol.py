"""The HTTP/1.1 connection protocol, on httptools (llhttp).

One :class:`HttpProtocol` per connection, one :class:`HttpServer` per
listening server (configuration, the cached clock, the connection set and a
once-a-second tick).  The protocol has the asyncio shape, so it runs on
``fastmux.Reactor`` and, for tests and comparison, on any asyncio loop.

Design
------
*Parsing* is llhttp's, strict mode: it rejects what request smuggling needs
(``Content-Length`` together with ``Transfer-Encoding``, two
``Content-Length`` headers, a ``Transfer-Encoding`` that does not end in
``chunked``, bare LF line ends, whitespace before the colon, obsolete line
folding).  Any parse error is a 400 (501 for an unknown method token) with
``Connection: close``, and nothing more is read from that connection.

*Limits* are enforced on what the parser hands over and on the bytes still
pending: request target over ``max_url`` is 414, head over ``max_head`` or
more than ``max_headers`` headers is 431, a body over ``max_body`` is 413
(as soon as ``Content-Length`` says so, before the body is read).  llhttp
itself buffers nothing but the header being assembled, and the pending-bytes
guard bounds that.

*Responses come out in request order.*  A request is answered when it
completes, synchronously, and the answers completed while one read is
parsed go to the transport together, in one write at the end of it (so a
pipelined burst costs one send; past 64 KiB collected they go at once) --
unless earlier answers are still waiting (a file being sent), in which case
the *request* is deferred (a tuple, no file opened yet) and answered when
its turn comes.  So a pipelined burst of file requests holds one open file
per connection, not one per request.  With pipelining the protocol stops
reading (``pause_reading``) while the transport is over its high-water mark
(``pause_writing``) or more than ``max_pipeline`` requests wait, and resumes
when both have drained.  The read in hand is always parsed to its end
(httptools cannot pause llhttp mid-buffer), so the worst case is one read's
worth (256 KiB) of small deferred requests.

*Timeouts* cost nothing per request: a once-a-second sweep (the same tick
that rebuilds the cached ``Date``) looks at each connection's state and how
long it has been in it -- idle keep-alive (``keepalive_timeout``, closed
quietly), a request head in progress (``header_timeout``, 408), a body not
progressing (``body_timeout``, 408), output not draining
(``send_timeout``, aborted) and a lingering close (``linger_timeout``).

*Closing* is a lingering close, as nginx does: after the last response the
protocol half-closes (``write_eof``) and discards input until the client's
EOF or ``linger_timeout``; closing outright with unread input in the kernel
buffer would make the kernel send RST, which can destroy the response (a
413 to an upload, say) before the client reads it.

*The hot path* -- ``GET /`` or ``HEAD /`` on a keep-alive connection with no
application and no ``--dir`` -- is one ``transport.write`` of a prebuilt
response (``Clock.hello``): no request object, no dict, no formatting, no
timer.  It is taken only for a small read (so every size limit above holds
by construction) on a connection with nothing queued; anything else takes
the general path.  With the compiled parser (``fastmux.http._parser_c``,
the same llhttp driven from C) the protocol hands such a read to
``feed_hello``, which recognizes and answers these requests in C without a
single Python callback and delivers every other request through the usual
callbacks.  With httptools (the pure-Python build) the same decision is made
in ``on_message_complete`` after three callbacks (``on_url``, ``on_header``
per header, ``on_message_complete``).  Not checked on any path: the presence
of ``Host`` (http.server, uvicorn and gunicorn do not either) -- a
deliberate trade for the hot path.

*Headers are split only when asked for.*  The compiled parser hands over a
head that came whole in one read as its header section, one ``bytes``
(``_add_head``): the limits need only its field count, and the application
gets it unsplit (``Request.get_header`` scans it; ``request.headers`` splits
it).  A head spanning reads arrives header by header, as from httptools.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import sys
import termios
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Set, Tuple

from .errors import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
)

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from ..reactor import _cython_shim as cython

from .._impl import load_twin
from .access_log import AccessLog
from .app import App
from .request import Fields
from .response import CLOSE, CONTINUE_100, KEEP
from .static import FileSend, Reply, StaticFiles

__all__ = ["HttpConfig", "HttpProtocol", "HttpServer", "RequestParser"]

# httptools' parser, or its compiled twin on the same llhttp with feed_hello.
RequestParser: type = load_twin("fastmux.http._parser_c", "httptools").HttpRequestParser
if cython.compiled:  # cimported by _protocol_c.pxd: the protocol builds Requests and renders in C
    from ._app_c import render
    from ._request_c import find_field, new_request, split_head, split_target
else:  # the compiled twins where they are built, as fastmux.http exports them
    render = load_twin("fastmux.http._app_c", "fastmux.http.app").render
    _request = load_twin("fastmux.http._request_c", "fastmux.http.request")
    find_field, new_request = _request.find_field, _request.new_request
    split_head, split_target = _request.split_head, _request.split_target
_response = load_twin("fastmux.http._response_c", "fastmux.http.response")
Clock, simple_response = _response.Clock, _response.simple_response

log = logging.getLogger("fastmux.http")

_FILE_CHUNK = 256 * 1024  # read size when a transport has no sendfile
_SIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)  # unsent bytes in a socket's send queue (Linux)
_ALLOW = b"Allow: GET, HEAD\r\n"
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) [^ \r\n]+ HTTP/")
# llhttp's request methods (llhttp/src/llhttp/constants.ts, METHODS_HTTP).
_KNOWN_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


class HttpConfig:
    """Limits (bytes, counts) and timeouts (seconds) for one server.

    A connection copies the limits it checks per request when it is made:
    set them before serving."""

    __slots__ = (
        "max_url", "max_head", "max_headers", "max_body", "max_pipeline", "small_read",
        "keepalive_timeout", "header_timeout", "body_timeout", "send_timeout", "linger_timeout",
    )

    def __init__(
        self,
        *,
        max_url: int = 8192,
        max_head: int = 32768,
        max_headers: int = 100,
        max_body: int = 1 << 20,
        max_pipeline: int = 64,
        keepalive_timeout: float = 15.0,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        send_timeout: float = 60.0,
        linger_timeout: float = 2.0,
    ) -> None:
        self.max_url = max_url
        self.max_head = max(max_head, max_url)
        self.max_headers = max_headers
        self.max_body = max_body
        self.max_pipeline = max_pipeline
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.linger_timeout = linger_timeout
        # Reads up to this size cannot hold a head over the limits, so the
        # hot path may skip the size checks for requests wholly inside one.
        self.small_read = min(4096, max_url, self.max_head)


class _Reject(Exception):
    """Raised inside a parser callback to answer ``status`` and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpServer:
    """State shared by one server's connections; calling it makes a protocol.

    ``loop`` needs ``time()`` and ``call_later()`` (fastmux.Reactor and
    asyncio loops both have them).  ``start()`` begins the once-a-second
    tick (Date header, timeouts); ``close()`` stops it.  Without a loop (unit
    tests with a fake transport) call ``tick(now)`` by hand.  ``parser`` is
    the request parser class (default :data:`RequestParser`).
    """

    def __init__(
        self,
        loop: Any = None,
        config: Optional[HttpConfig] = None,
        app: Optional[App] = None,
        static: Optional[StaticFiles] = None,
        parser: Optional[type] = None,
        access_log: Optional[AccessLog] = None,
    ) -> None:
        self.loop = loop
        self.parser = parser or RequestParser
        self.config = config or HttpConfig()
        self.app = app
        self.static = static
        self.clock = Clock()
        self.connections: Set[HttpProtocol] = set()
        self.access_log = access_log
        # The hello fast path answers without Python: no app, files or log to consult.
        self.hello_fast = app is None and static is None and access_log is None
        self.requests = 0  # completed on closed connections (see stats())
        # Optional graceful-shutdown registry (fastmux.servers' Connections):
        # add(conn)/discard(conn); it calls conn.shutdown() or conn.abort().
        self.registry: Any = None
        self._timer: Any = None
        self._closed = False

    def __call__(self) -> "HttpProtocol":
        return HttpProtocol(self)

    def now(self) -> float:
        return self.loop.time() if self.loop is not None else time.monotonic()

    def start(self) -> "HttpServer":
        if self._timer is None and self.loop is not None:
            self._closed = False
            self._schedule()
        return self

    def close(self) -> None:
        """Stop the tick (connections are closed by whoever owns the listener)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.access_log is not None:
            self.access_log.close()

    def _schedule(self) -> None:
        # Fire just after each wall-clock second turns, so Date is never stale
        # by more than the loop's own latency.
        delay = 1.0005 - (time.time() % 1.0)
        self._timer = self.loop.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        try:
            self.tick()
        finally:
            if not self._closed:
                self._schedule()

    def tick(self, now: Optional[float] = None, wall: Optional[float] = None) -> None:
        """Refresh the Date cache, apply timeouts, flush the access log."""
        self.clock.refresh(wall)
        if self.access_log is not None:
            self.access_log.tick()
        if now is None:
            now = self.now()
        for conn in list(self.connections):
            try:
                conn._check_timeouts(now)
            except Exception:  # one broken connection must not stop the sweep
                log.exception("timeout check failed for %r", conn)

    def stats(self) -> dict:
        return {
            "connections": len(self.connections),
            "requests": self.requests + sum(c.requests() for c in self.connections),
        }


def _noop(*args: Any) -> None:
    return None


# _deferred holds requests to answer later, as tuples captured while the
# parser still described them, and bare status responses to send in their
# place in the order -- an error, or "100 Continue" -- as (_NOTICE, status, extra).
_NOTICE = object()


class HttpProtocol:
    """One HTTP/1.x connection.  See the module docstring for the design."""

    __slots__ = (
        "_server", "_config", "_clock", "_hello", "_transport", "_write", "_parser", "_feed", "_hello_parser",
        "_url", "_headers", "_head", "_nhead", "_trailers", "_method", "_version", "_keep_alive",
        "_body", "_body_len", "_head_bytes", "_in_body", "_expect",
        "_fast", "_fast_ok", "_careful", "_closing", "_lingering", "_eof", "_draining",
        "_queue", "_deferred", "_in_drain", "_writing_paused", "_reading_paused", "_wprogress",
        "_nreq", "_tkey", "_tsince", "_peer", "_sendfile", "_native_files", "_small", "_access",
        "_app", "_static", "_hello_fast", "_method_bytes", "_method_str", "_max_url", "_max_headers", "_max_body",
        "_batch", "_out1", "_out", "_out_size",
        "__weakref__",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._config = server.config
        self._clock = server.clock
        self._hello = server.clock.hello  # the clock refreshes this list in place
        self._transport: Any = None
        self._write: Callable[[bytes], Any] = _noop
        self._parser: Optional[HttpRequestParser] = None
        self._feed: Callable[[bytes], Any] = _noop
        # The parser again when it has feed_hello (the compiled one), else None.
        self._hello_parser: Any = None
        # The request being parsed.
        self._url = b""
        self._headers: List[Tuple[bytes, bytes]] = []
        # Or its header section, whole and unsplit, and its field count
        # (_add_head); None while the headers come one by one.
        self._head: Optional[bytes] = None
        self._nhead = 0
        # What the parser said of it when its head was whole (_head_done).
        self._method = b""
        self._version = ""
        self._keep_alive = False
        self._body: List[bytes] = []
        self._body_len = 0
        self._head_bytes = 0  # bytes read while a head is incomplete (see _partial)
        # Past its head: header fields now are chunked trailers, kept apart
        # (RFC 9110 6.5.1: never merged into the header section).
        self._in_body = False
        self._trailers: List[Tuple[bytes, bytes]] = []
        self._expect = False  # it asked for 100-continue (answered by _partial)
        # _fast: take the hello-world path for the next request.  _fast_ok:
        # this server allows it and the connection has passed the checks of
        # its first request (the HTTP version, which the hot path skips).
        self._fast = False
        self._fast_ok = False
        self._careful = False  # parsing a large read: every request takes the general path
        self._closing = False  # the last response is decided: ignore further input
        self._lingering = False  # write side shut, waiting for the client's EOF
        self._eof = False
        self._draining = False  # graceful shutdown asked for: the current response is the last
        # Output: _queue holds responses the transport cannot take yet (a file
        # being streamed, or one handed to sendfile while more waits);
        # _deferred holds *requests* parsed while _queue was busy, answered
        # in order when it empties (so no file is opened before its turn).
        self._queue: Deque[Reply] = deque()
        self._deferred: Deque[Tuple[Any, ...]] = deque()
        self._in_drain = False
        self._writing_paused = False
        self._reading_paused = False
        self._wprogress = 0
        # While a read is parsed (_batch), the responses it completes collect
        # and go to the transport in one write at its end: a pipelined burst
        # costs one send, not one per response.  The first waits in _out1,
        # the rest in _out: a read with one request allocates nothing more.
        self._batch = False
        self._out1: Optional[bytes] = None
        self._out: List[bytes] = []
        self._out_size = 0
        # Timeouts (see _check_timeouts).
        self._nreq = 0  # requests completed, except those feed_hello answered
        self._tkey: Any = None
        self._tsince = 0.0
        self._peer: Any = None
        self._sendfile: Any = None
        self._native_files = False
        # What the per-request path reads of the server and its limits, as
        # C fields when compiled.
        self._app = server.app
        self._static = server.static
        self._hello_fast = server.hello_fast
        self._method_bytes = b""
        self._method_str = ""
        self._access = server.access_log
        cfg = server.config
        self._small = cfg.small_read
        self._max_url = cfg.max_url
        self._max_headers = cfg.max_headers
        self._max_body = cfg.max_body

    def __repr__(self) -> str:
        return f"<HttpProtocol peer={self._peer!r} requests={self.requests()}>"

    def requests(self) -> int:
        """Requests completed on this connection."""
        if self._hello_parser is not None:
            return self._nreq + self._hello_parser.answered
        return self._nreq

    # -- transport events -----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # TCP_NODELAY is already set by both fastmux.Reactor and asyncio.
        self._transport = transport
        self._write = transport.write
        self._parser = parser = self._server.parser(self)
        self._feed = parser.feed_data
        if hasattr(parser, "feed_hello"):
            self._hello_parser = parser
            # It answers only within a read, so through _emit; the compiled
            # protocol is a RequestSink, whose _emit the parser calls as C.
            parser.set_hello(None if cython.compiled else self._emit, self._config.max_headers)
        self._peer = transport.get_extra_info("peername")
        # A transport with sendfile(file, offset, count, head=) (fastmux's)
        # sends files zero-copy; otherwise they are streamed with pread + write.
        self._sendfile = getattr(transport, "sendfile", None)
        server = self._server
        server.connections.add(self)
        self._tsince = server.now()
        if server.registry is not None:
            server.registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # answered with close (or lingering): input is discarded
        self._batch = True
        try:
            if len(data) > self._small:
                self._data_careful(data)
            else:
                if self._hello_parser is not None:
                    # compiled: a C call (the attribute is typed in _protocol_c.pxd).
                    # The error comes back as a value: no try block on this path.
                    exc = self._hello_parser.feed_hello(data, self._hello if self._fast else None)
                    if exc is not None:
                        self._feed_failed(exc, data)
                else:
                    try:
                        self._feed(data)
                    except (HttpParserUpgrade, HttpParserError) as exc:
                        self._feed_failed(exc, data)
                if self._url:
                    self._partial(len(data))
        finally:
            self._batch = False
            if self._out1 is not None:
                self._flush_out()

    def eof_received(self) -> Optional[bool]:
        self._eof = True
        if self._lingering or self._transport is None:
            return None  # the client has read our close: let the transport close
        self._closing = True
        self._fast = False
        if self._queue or self._deferred:
            return True  # keep the write side open until the answers are out
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._closing = True
        self._lingering = False
        self._fast = False
        self._fast_ok = False
        queue, self._queue = self._queue, deque()
        for item in queue:
            if type(item) is FileSend:
                item.close()
        self._deferred = deque()
        server = self._server
        server.connections.discard(self)
        if server.registry is not None:
            server.registry.discard(self)
        server.requests += self.requests()
        self._nreq = 0
        self._transport = None
        self._write = _noop
        self._feed = _noop
        self._hello_parser = None
        self._parser = None  # break the parser <-> protocol cycle
        self._headers = []
        self._head = None
        self._body = []
        self._out1 = None
        self._out.clear()
        self._sendfile = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wprogress += 1
        self._drain()

    # -- graceful shutdown (fastmux.servers.shutdown) --------------------------

    def shutdown(self) -> None:
        """Finish the requests already read (the last response says
        Connection: close), then close; an idle connection closes now."""
        if self._transport is None:
            return
        self._fast_ok = False
        self._fast = False
        if self._closing:
            return
        if self._url or self._body_len or self._input_pending():
            # A request is arriving, or has arrived and waits unread in the
            # socket (a keep-alive client that just sent its next one): it is
            # answered, with the close.  Closing now would drop it unanswered.
            self._draining = True
            return
        self._closing = True
        if not self._queue and not self._deferred:
            self._finish()

    def _input_pending(self) -> bool:
        """Bytes in the socket's receive queue not read yet (FIONREAD)."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is None:
            return False
        try:
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0] > 0
        except (OSError, ValueError, AttributeError):
            return False

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- parser callbacks (httptools) -----------------------------------------
    # Each hands its event to the method after it, which the compiled parser
    # calls directly, as C, when the protocol is compiled too (it is then a
    # fastmux.http._parser_c.RequestSink): no Python call per request.

    def on_url(self, url: bytes) -> None:
        self._add_url(url)

    def _add_url(self, url: bytes) -> None:
        # llhttp may deliver the target in pieces when it spans reads.
        if self._url:
            self._url += url
        else:
            self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._add_header(name, value)

    def _add_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the OWS before a value, not after it (RFC 9110 5.5:
        # neither is part of the value).
        if value and (value[-1] == 32 or value[-1] == 9):
            value = value.rstrip(b" \t")
        if self._in_body:
            self._trailers.append((name, value))
        else:
            self._headers.append((name, value))

    def _add_head(self, url: bytes, head: bytes, nfields: int) -> None:
        # The whole head was in one read, so nothing of it came before.
        self._url = url
        self._head = head
        self._nhead = nfields

    def _fields(self) -> List[Tuple[bytes, bytes]]:
        """The request's headers so far as pairs, splitting a section
        handed over whole: for the checks that read every header."""
        if self._head is not None:
            self._headers = split_head(self._head)
            self._head = None
        return self._headers

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._head_done(
            parser.get_method(), parser.get_http_version(), parser.should_keep_alive(),  # type: ignore[union-attr]
            self._declared_length(),
        )

    def _declared_length(self) -> int:
        """What the compiled parser reads from llhttp for _head_done, found
        in the headers: the Content-Length, -1 for a chunked body, else 0."""
        for name, value in self._headers:
            n = len(name)
            if n == 14 and name.lower() == b"content-length":
                try:
                    return min(int(value), sys.maxsize)
                except ValueError:
                    return 0  # llhttp rejects it
            if n == 17 and name.lower() == b"transfer-encoding":
                return -1  # llhttp rejects any but chunked
        return 0

    def _head_done(self, method: bytes, version: str, keep_alive: bool, length: int) -> None:
        """The head is whole: refuse an oversize body before reading a byte
        of it, and note ``Expect: 100-continue`` only once every header is
        known (it must not be answered for a request refused here).
        ``length``: the body's Content-Length, -1 if chunked, 0 for none."""
        self._method = method
        self._version = version
        self._keep_alive = keep_alive
        self._in_body = True
        if length == 0:
            return  # the request completes now: nothing to refuse or continue
        if length > self._max_body:
            raise _Reject(413)
        if self._head is not None and find_field(self._head, b"expect") is None:
            return  # none to look at: the section stays unsplit
        for name, value in self._fields():
            if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
                self._expect = True

    def on_body(self, chunk: bytes) -> None:
        self._add_body(chunk)

    def _add_body(self, chunk: bytes) -> None:
        self._fast = False
        n = self._body_len + len(chunk)
        if n > self._max_body:
            raise _Reject(413)
        self._body_len = n
        if self._app is not None:  # only an application reads bodies
            self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._message_done()

    def _message_done(self) -> None:
        url = self._url
        self._url = b""
        self._nreq += 1
        self._in_body = False
        self._expect = False
        if self._fast and url == b"/" and not self._trailers and self._keep_alive:
            method = self._method
            if method == b"GET" or method == b"HEAD":
                self._headers.clear()
                self._head = None
                self._emit(self._hello[method == b"HEAD"])
                return
        self._request(url)

    # -- the general path -----------------------------------------------------

    def _request(self, url: bytes) -> None:
        headers: Fields
        if self._head is None:
            headers = self._headers
            nfields = len(headers)
            self._headers = []
        else:
            headers = self._head
            nfields = self._nhead
            self._head = None
        trailers = self._trailers
        if trailers:
            self._trailers = []
        body_len = self._body_len
        body = self._body
        if body_len:
            self._body = []
            self._body_len = 0
        spanned = self._head_bytes  # nonzero: the head came in several reads
        self._head_bytes = 0
        if self._closing:
            return  # a pipelined request after one we answered with close
        version = self._version
        method = self._method
        if version != "1.1" and version != "1.0":
            self._fail(505)
            return
        if method == b"CONNECT":  # no tunnels; the rest of the stream is not HTTP
            self._fail(405, _ALLOW)
            return
        if len(url) > self._max_url:
            self._fail(414)
            return
        if nfields > self._max_headers:
            self._fail(431)
            return
        if self._careful or spanned:  # a head that arrived in one small read is under max_head already
            if type(headers) is bytes:
                headers = split_head(headers)
            if len(url) + sum(len(n) + len(v) + 4 for n, v in headers) > self._config.max_head:
                self._fail(431)
                return
        keep = self._keep_alive and not self._draining
        if not keep:
            self._closing = True  # this is the last request we answer
        elif not self._fast_ok and self._hello_fast:
            self._fast_ok = True
        if self._queue or self._deferred:
            self._defer((method, url, version, headers, body, body_len, keep, trailers))
        else:
            self._respond(method, url, version, headers, body, body_len, keep, trailers)
            self._refresh_fast()

    def _respond(
        self, method: bytes, url: bytes, version: str, headers: Fields, body: List[bytes],
        body_len: int, keep: bool, trailers: List[Tuple[bytes, bytes]],
    ) -> None:
        conn = KEEP if keep else CLOSE
        try:
            reply = self._answer(method, url, version, headers, body, body_len, keep, conn, trailers)
        except Exception:
            log.exception("error answering %r %r", method, url)
            reply = simple_response(self._clock, 500, conn, method == b"HEAD")
        if self._access is not None:
            self._access.record(self._peer, b"%s %s HTTP/%s" % (method, url, version.encode()), reply)
        self._push(reply)
        if not keep and not self._queue:
            self._finish()

    def _answer(self, method, url, version, headers, body, body_len, keep, conn, trailers) -> Reply:
        clock = self._clock
        head_only = method == b"HEAD"
        app = self._app
        if app is not None:
            # The compiled parser hands over one bytes object per method:
            # the last one's str serves again.
            if method is not self._method_bytes:
                self._method_str = method.decode("ascii")
                self._method_bytes = method
            req = new_request(
                self._method_str, url, version, headers,
                b"".join(body) if body_len else b"", keep, self._peer, trailers,
            )
            try:
                result = app(req)
            except Exception:
                log.exception("application error for %r", req)
                return simple_response(clock, 500, conn, head_only)
            if result is not None:
                return render(result, req, clock, conn)
        if method != b"GET" and not head_only:
            return simple_response(clock, 405, conn, False, extra=_ALLOW)
        if self._static is not None:
            return self._static.serve(url, split_head(headers) if type(headers) is bytes else headers,
                                      head_only, clock, conn)
        if split_target(url)[0] == b"/":
            return clock.hello[conn * 2 + head_only]
        return simple_response(clock, 404, conn, head_only)

    def _defer(self, item: Tuple[Any, ...]) -> None:
        self._deferred.append(item)
        self._fast = False
        if len(self._deferred) > self._config.max_pipeline:
            self._pause_reading()

    def _refresh_fast(self) -> None:
        self._fast = (
            self._fast_ok and not self._queue and not self._deferred and not self._careful
            and not self._closing and not self._url and not self._body_len
        )

    # -- slow paths for input -------------------------------------------------

    def _data_careful(self, data: bytes) -> None:
        """A large read: may hold big heads or many pipelined requests, so
        every request in it takes the general path with the exact size checks."""
        self._careful = True
        self._fast = False
        try:
            self._feed(data)
        except (HttpParserUpgrade, HttpParserError) as exc:
            self._feed_failed(exc, data)
        finally:
            self._careful = False
        if self._url:
            self._partial(len(data))
        else:
            self._refresh_fast()

    def _feed_failed(self, exc: Exception, data: bytes) -> None:
        """What parsing ``data`` raised (or feed_hello returned)."""
        if isinstance(exc, HttpParserUpgrade):
            self._after_upgrade(data, exc.args[0])
        else:
            self._parse_error(exc, data)  # type: ignore[arg-type]

    def _after_upgrade(self, data: bytes, offset: int) -> None:
        # llhttp stops after a request with Upgrade (or CONNECT).  We do not
        # switch protocols (RFC 9110 7.8 lets a server ignore Upgrade), so the
        # request was answered as plain HTTP and parsing simply goes on.
        while not self._closing:
            data = data[offset:]
            if not data:
                return
            try:
                self._feed(data)
                return
            except HttpParserUpgrade as exc:
                offset = exc.args[0]
            except HttpParserError as exc:
                self._parse_error(exc, data)
                return

    def _partial(self, nbytes: int) -> None:
        """A request is still arriving after this read: bound it, and answer
        ``Expect: 100-continue`` (or refuse early with 413)."""
        self._fast = False
        if self._closing or self._body_len:
            return
        cfg = self._config
        self._head_bytes += nbytes
        if self._head_bytes > cfg.max_head:
            # Over the limit in raw bytes: the head itself may still be under
            # it (the count includes the end of the previous request), so look
            # at what the parser has delivered, and allow what llhttp may hold
            # for the header being assembled up to another max_head.
            delivered = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._fields())
            if len(self._url) > cfg.max_url:
                self._fail(414)
                return
            if delivered > cfg.max_head or self._head_bytes > 2 * cfg.max_head:
                self._fail(431)
                return
        if (len(self._headers) if self._head is None else self._nhead) > cfg.max_headers:
            self._fail(431)
            return
        if self._expect:  # the head is whole and no body byte has come yet
            self._expect = False
            if self._version == "1.1":
                # In order: after the responses to earlier requests.
                if self._queue or self._deferred:
                    self._deferred.append((_NOTICE, 100, b""))
                else:
                    self._emit(CONTINUE_100)

    def _parse_error(self, exc: HttpParserError, data: bytes) -> None:
        status = 400
        if isinstance(exc, HttpParserInvalidMethodError):
            # llhttp says "invalid method" both for a method token it does
            # not know (501 Not Implemented) and for bytes that are no token
            # at all, such as a TLS ClientHello (400), and not where.  A
            # client trying an unknown method sends it at the start of a
            # read: look there for a request line.
            m = _REQUEST_LINE.match(data.lstrip(b"\r\n"))
            if m is not None and m.group(1) not in _KNOWN_METHODS:
                status = 501
        elif isinstance(exc, HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, _Reject):
                status = cause.status
            elif cause is not None:
                log.error("internal error in a parser callback", exc_info=cause)
                status = 500
        self._fail(status)

    def _fail(self, status: int, extra: bytes = b"") -> None:
        """Answer ``status`` with Connection: close (after the responses to
        earlier requests), then close."""
        self._url = b""
        self._headers = []
        self._head = None
        self._trailers = []
        self._in_body = False
        self._expect = False
        self._body = []
        self._body_len = 0
        if self._closing:
            return  # the response already decided as the last one stays the last
        self._closing = True
        self._fast = False
        if self._access is not None:
            self._access.record(self._peer, None, simple_response(self._clock, status, CLOSE, extra=extra))
        if self._queue or self._deferred:
            self._deferred.append((_NOTICE, status, extra))
            return
        self._push(simple_response(self._clock, status, CLOSE, extra=extra))
        if not self._queue:
            self._finish()

    # -- output ----------------------------------------------------------------

    def _push(self, reply: Reply) -> None:
        """Send one complete response, after any still queued (order matters)."""
        if self._transport is None:
            if type(reply) is FileSend:
                reply.close()  # type: ignore[union-attr]
            return
        if not self._queue and type(reply) is bytes:
            self._emit(reply)
            return
        self._queue.append(reply)
        self._fast = False
        self._drain()

    def _emit(self, data: bytes) -> None:
        """Write ``data``, or collect it while a read is parsed."""
        if not self._batch:
            self._write(data)
            return
        if self._out1 is None:
            self._out1 = data
            return
        out = self._out
        if not out:
            self._out_size = len(self._out1)
        out.append(data)
        self._out_size += len(data)
        # Written at 64 KiB: a join copies at most that besides the last
        # response (a literal: compiled, a C compare).
        if self._out_size >= 65536:
            self._flush_out()

    def _flush_out(self) -> None:
        """Write what _emit collected, as one buffer (one send)."""
        data = self._out1
        self._out1 = None
        out = self._out
        if out:
            out.insert(0, data)
            data = b"".join(out)
            out.clear()
        self._write(data)

    def _drain(self) -> None:
        """Move queued responses to the transport, then answer deferred
        requests, while the transport is not over its high-water mark."""
        if self._in_drain:
            return  # the running loop below will see what was queued
        # The loop writes to the transport itself (files, high-water checks):
        # what was collected goes first, and nothing collects meanwhile.
        if self._out1 is not None:
            self._flush_out()
        batch = self._batch
        self._batch = False
        self._in_drain = True
        try:
            queue = self._queue
            deferred = self._deferred
            while self._transport is not None and not self._writing_paused:
                if queue:
                    item = queue[0]
                    if type(item) is bytes:
                        queue.popleft()
                        self._write(item)
                    elif self._send_file(item):  # type: ignore[arg-type]
                        queue.popleft()
                    else:
                        return  # the file goes on when the transport drains
                elif deferred:
                    item = deferred.popleft()
                    if item[0] is _NOTICE:
                        status = item[1]
                        if status == 100:
                            self._write(CONTINUE_100)
                        else:
                            self._push(simple_response(self._clock, status, CLOSE, extra=item[2]))
                    else:
                        method, url, version, headers, body, body_len, keep, trailers = item
                        self._respond(method, url, version, headers, body, body_len, keep, trailers)
                else:
                    break
            if self._transport is None or queue or deferred:
                return
            if self._closing:
                self._finish()
            else:
                self._refresh_fast()
        finally:
            self._in_drain = False
            self._batch = batch
            self._maybe_resume_reading()

    def _send_file_native(self, item: FileSend) -> None:
        """The transport's sendfile, zero-copy; it holds its own dup of the fd."""
        if not self._native_files:
            # The transport counts only bytes in memory toward its
            # high-water mark, not pending sendfile ranges.  With the mark
            # at zero, a response head queued behind a pending file pauses
            # us until that file is out: at most one file waits per
            # connection, instead of one dup'd descriptor per pipelined
            # request.
            self._native_files = True
            self._transport.set_write_buffer_limits(high=0, low=0)
        # The head goes with the file: in its first segment, not a packet of
        # its own that costs the client a wake-up.
        self._sendfile(item.fd, item.offset, item.count, head=item.head)
        item.head = b""
        item.count = 0
        item.close()

    def _send_file(self, item: FileSend) -> bool:
        """Move a file response to the transport; False if it must wait."""
        if self._sendfile is not None and item.count > 0:
            self._send_file_native(item)
            return True
        if item.head:
            self._write(item.head)
            item.head = b""
            if self._writing_paused:
                return False
        if item.count <= 0:
            item.close()
            return True
        while item.count > 0:
            if self._writing_paused or self._transport is None:
                return False
            try:
                chunk = os.pread(item.fd, min(item.count, _FILE_CHUNK), item.offset)
            except OSError:
                chunk = b""
            if not chunk:
                # The file shrank after we announced its length: the only
                # honest way out is to break the connection.
                item.close()
                self._transport.abort()
                return False
            item.offset += len(chunk)
            item.count -= len(chunk)
            self._write(chunk)
        item.close()
        return True

    def _finish(self) -> None:
        """Every answer is with the transport and the connection is to close."""
        transport = self._transport
        if transport is None or self._lingering:
            return
        if self._out1 is not None:
            self._flush_out()
        self._lingering = True
        self._tkey = None
        try:
            can_eof = not self._eof and transport.can_write_eof()
        except Exception:
            can_eof = False
        if can_eof:
            transport.write_eof()
            self._maybe_resume_reading(force=True)  # keep draining the client's input
        else:
            transport.close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            try:
                self._transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass

    def _maybe_resume_reading(self, force: bool = False) -> None:
        if not self._reading_paused or self._transport is None:
            return
        if force or (not self._writing_paused and len(self._deferred) <= self._config.max_pipeline):
            self._reading_paused = False
            try:
                self._transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    # -- timeouts (called by the server's once-a-second sweep) ----------------

    def _unsent(self, transport: Any) -> int:
        """Bytes not yet delivered to the client: in the transport's memory,
        or, after a native sendfile (which the transport does not count), in
        the kernel's send queue."""
        buffered = transport.get_write_buffer_size()
        if not buffered and self._native_files:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    buffered = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
                except (OSError, ValueError):
                    pass
        return buffered

    def _check_timeouts(self, now: float) -> None:
        transport = self._transport
        if transport is None:
            return
        cfg = self._config
        unsent = self._unsent(transport)
        if unsent or self._writing_paused:
            # Output not draining: the client stopped reading (or vanished
            # without a reset).  Progress is any change in what is unsent.
            key: Tuple[Any, ...] = ("send", self._wprogress, unsent)
            limit = cfg.send_timeout
        elif self._lingering or self._closing:
            key, limit = ("linger",), cfg.linger_timeout
        elif self._url:
            if self._body_len:
                key, limit = ("body", self.requests(), self._body_len), cfg.body_timeout
            else:
                key, limit = ("head", self.requests()), cfg.header_timeout
        else:
            # draining and still idle: what was pending formed no request
            key, limit = ("idle", self.requests()), (0.0 if self._draining else cfg.keepalive_timeout)
        if key != self._tkey:
            self._tkey = key
            self._tsince = now
            return
        if now - self._tsince < limit:
            return
        kind = key[0]
        self._tkey = None
        if kind == "head" or kind == "body":
            self._fail(408)
        elif kind == "idle":
            self._closing = True
            transport.close()
        else:  # send, linger
            transport.abort()
