# cython: language_level=3
"""httptools' request parser, on the same llhttp, driven from C -- plus
``feed_hello``, which answers the hello-world request without calling Python.

``HttpRequestParser(protocol)`` behaves as ``httptools.HttpRequestParser``
does for the parts of its interface fastmux uses: ``feed_data``,
``get_method``, ``get_http_version``, ``should_keep_alive``,
``should_upgrade``; the protocol callbacks ``on_message_begin``, ``on_url``,
``on_header``, ``on_headers_complete``, ``on_body``, ``on_message_complete``,
``on_chunk_header``, ``on_chunk_complete``; and httptools' own exception
classes, with the same messages.  tests/http/test_parser_twins.py feeds both
parsers the same bytes, split the same way, and fails on any difference.

A protocol that is a :class:`RequestSink` (the compiled ``HttpProtocol``
subclasses it) gets the same events as C method calls instead: the URL and
header callbacks (``_add_url``, ``_add_header``), ``on_headers_complete``
with the method, version, keep-alive and body length (``_head_done``),
``on_body`` and ``on_message_complete`` -- no Python call per request, nor
per header.  A request whose head (up to 32 headers) lies wholly in one
read makes no ``_add_url`` or ``_add_header`` call at all: ``_add_head``
hands over its URL and its header section (the ``Name: value`` lines as
received) as two ``bytes``, for the protocol to split only if it must (an
application that reads one header never splits the rest).

``feed_hello(data, replies)`` parses ``data`` as ``feed_data`` does, except
for requests that begin in ``data`` and turn out to be ``GET /`` or
``HEAD /``, HTTP/1.0 or 1.1, keep-alive, without a body, upgrade, or more
than ``max_headers`` (or ``MAX_HELD_HEADERS``) headers: each of those is answered by writing
``replies[0]`` (GET) or ``replies[1]`` (HEAD) with the ``write`` given to
``set_hello`` (a RequestSink's ``_emit``, as a C call), and makes no other
callback at all (``answered`` counts them).
The error ``feed_data`` would raise, ``feed_hello`` returns (else None): the
caller's per-read path then needs no try block.
Until a request is known to be one, its URL and headers are held as spans
of ``data``; as soon as it is known not to be (or ``data`` ends first), the
held callbacks are made, in order, exactly as ``feed_data`` would have made
them (or, for a RequestSink whose head is whole, ``_add_head``), and the
rest of ``data`` is parsed as ``feed_data`` parses it.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
from fastmux.includes cimport llhttp as ll

from fastmux.http.errors import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserInvalidStatusError,
    HttpParserInvalidURLError,
    HttpParserUpgrade,
)

__all__ = ["HttpRequestParser", "MAX_HELD_HEADERS", "RequestSink"]

MAX_HELD_HEADERS = (MAX_HELD - 1) // 2  # (declarations: _parser_c.pxd)

# llhttp's method names as bytes, made once each (get_method is per request).
cdef list _METHOD_NAMES = [None] * 256


cdef bytes _method_name(ll.llhttp_t *p):
    name = _METHOD_NAMES[p.method]
    if name is None:
        name = _METHOD_NAMES[p.method] = <bytes>ll.llhttp_method_name(<ll.llhttp_method_t>p.method)
    return name


cdef class RequestSink:
    """A protocol the parser feeds with C calls (see the module doc); the
    methods are the protocol's to define."""

    cdef _add_url(self, bytes url):
        raise NotImplementedError

    cdef _add_header(self, bytes name, bytes value):
        raise NotImplementedError

    cdef _add_head(self, bytes url, bytes head, Py_ssize_t nfields):
        raise NotImplementedError

    cdef _head_done(self, bytes method, str version, bint keep_alive, Py_ssize_t length):
        raise NotImplementedError

    cdef _add_body(self, bytes chunk):
        raise NotImplementedError

    cdef _message_done(self):
        raise NotImplementedError

    cdef _emit(self, bytes reply):
        raise NotImplementedError


cdef class HttpRequestParser:
    def __cinit__(self):
        ll.llhttp_settings_init(&self._settings)
        self._settings.on_message_begin = _cb_message_begin
        self._settings.on_url = _cb_url
        self._settings.on_header_field = _cb_header_field
        self._settings.on_header_value = _cb_header_value
        self._settings.on_headers_complete = _cb_headers_complete
        self._settings.on_body = _cb_body
        self._settings.on_message_complete = _cb_message_complete
        self._settings.on_chunk_header = _cb_chunk_header
        self._settings.on_chunk_complete = _cb_chunk_complete
        ll.llhttp_init(&self._p, ll.HTTP_REQUEST, &self._settings)
        self._p.data = <void *>self

    def __init__(self, protocol):
        if isinstance(protocol, RequestSink):
            self._sink = protocol
        self._on_message_begin = getattr(protocol, "on_message_begin", None)
        self._on_url = getattr(protocol, "on_url", None)
        self._on_header = getattr(protocol, "on_header", None)
        self._on_headers_complete = getattr(protocol, "on_headers_complete", None)
        self._on_body = getattr(protocol, "on_body", None)
        self._on_message_complete = getattr(protocol, "on_message_complete", None)
        self._on_chunk_header = getattr(protocol, "on_chunk_header", None)
        self._on_chunk_complete = getattr(protocol, "on_chunk_complete", None)

    # -- httptools' interface --------------------------------------------------

    def get_method(self):
        return _method_name(&self._p)

    def get_http_version(self):
        return self._version()

    cdef str _version(self):
        major = self._p.http_major
        minor = self._p.http_minor
        if major == 1:
            return "1.1" if minor == 1 else ("1.0" if minor == 0 else f"1.{minor}")
        return f"{major}.{minor}"

    def should_keep_alive(self):
        return bool(ll.llhttp_should_keep_alive(&self._p))

    def should_upgrade(self):
        return bool(self._p.upgrade)

    def feed_data(self, data):
        exc = self._execute(data, False)
        if exc is not None:
            raise exc

    # -- the hello-world shortcut ----------------------------------------------

    def set_hello(self, write, int max_headers):
        """Where ``feed_hello`` writes its answers (a RequestSink's go to its
        ``_emit``: ``write`` may be None), and the most headers a request it
        answers may have."""
        if write is None and self._sink is None:
            raise TypeError("set_hello() needs a write callable")
        self._write = write
        self._max_headers = max_headers
        self._hello_set = True

    cpdef feed_hello(self, data, replies):
        """``feed_data``, answering hello-world requests itself (see the module
        doc) unless ``replies`` is None; what ``feed_data`` would raise is
        returned instead, else None."""
        if not self._hello_set:
            raise RuntimeError("feed_hello() before set_hello()")
        self._replies = replies
        # A request begun in an earlier read has made its callbacks already.
        return self._execute(data, replies is not None and not self._in_message)

    # -- feeding ---------------------------------------------------------------

    cdef _execute(self, data, bint hello):
        """Parse ``data``: None, or the HttpParserError or HttpParserUpgrade to
        raise (returned, so that feed_hello's caller needs no try block)."""
        cdef Py_buffer buf
        cdef ll.llhttp_errno_t err
        if type(data) is bytes:  # what transports pass: no buffer protocol needed
            PyBuffer_FillInfo(&buf, data, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), 1, PyBUF_SIMPLE)
        else:
            PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        self._hello = hello
        upgrade = None
        try:
            err = ll.llhttp_execute(&self._p, <const char *>buf.buf, <size_t>buf.len)
            if self._holding:
                # The request goes on in the next read (or llhttp stopped in
                # it): make its callbacks now, while the spans are valid.
                self._release_at_end(err)
                if err == ll.HPE_OK:
                    err = <ll.llhttp_errno_t>self._p.error
            if err == ll.HPE_PAUSED_UPGRADE and self._p.upgrade:
                # As httptools: report where the upgraded stream begins and
                # leave the parser ready for more.
                offset = ll.llhttp_get_error_pos(&self._p) - <const char *>buf.buf
                ll.llhttp_resume_after_upgrade(&self._p)
                upgrade = HttpParserUpgrade(offset)
        finally:
            self._hello = False
            self._holding = False
            self._replies = None
            PyBuffer_Release(&buf)
        if upgrade is not None:
            return upgrade
        if err != ll.HPE_OK:
            return self._parse_error(<ll.llhttp_errno_t>self._p.error)
        return None

    cdef _parse_error(self, ll.llhttp_errno_t errno):
        reason = (<bytes>ll.llhttp_get_error_reason(&self._p)).decode("latin-1")
        if (errno == ll.HPE_CB_MESSAGE_BEGIN or errno == ll.HPE_CB_HEADERS_COMPLETE
                or errno == ll.HPE_CB_MESSAGE_COMPLETE or errno == ll.HPE_CB_CHUNK_HEADER
                or errno == ll.HPE_CB_CHUNK_COMPLETE or errno == ll.HPE_USER):
            exc = HttpParserCallbackError(reason)
            if self._error is not None:
                exc.__context__ = self._error
                self._error = None
            return exc
        if errno == ll.HPE_INVALID_STATUS:
            return HttpParserInvalidStatusError(reason)
        if errno == ll.HPE_INVALID_METHOD:
            return HttpParserInvalidMethodError(reason)
        if errno == ll.HPE_INVALID_URL:
            return HttpParserInvalidURLError(reason)
        return HttpParserError(reason)

    # -- holding a request's callbacks -----------------------------------------

    cdef bint _hold(self, SpanKind kind, const char *at, size_t length) noexcept:
        """Keep a span of the held request; False when it cannot be held."""
        cdef Span *last
        if self._nheld:
            last = &self._held[self._nheld - 1]
            if last.kind == kind:  # a span continued within one read
                if last.at + last.length != at:
                    return False
                last.length += length
                return True
        if self._nheld == MAX_HELD:
            return False
        if kind == FIELD:
            self._nfields += 1
        self._held[self._nheld].kind = kind
        self._held[self._nheld].at = at
        self._held[self._nheld].length = length
        self._nheld += 1
        return True

    cdef bint _answerable(self) noexcept:
        """At the end of the held request's head: is it one feed_hello answers?"""
        cdef ll.llhttp_t *p = &self._p
        if p.method != ll.HTTP_GET and p.method != ll.HTTP_HEAD:
            return False
        if p.http_major != 1 or p.http_minor > 1 or p.upgrade:
            return False
        if p.flags & (ll.F_CHUNKED | ll.F_TRANSFER_ENCODING | ll.F_UPGRADE):
            return False
        if (p.flags & ll.F_CONTENT_LENGTH) and p.content_length:
            return False
        if self._nfields > self._max_headers or not ll.llhttp_should_keep_alive(p):
            return False
        if self._nheld == 0 or self._held[0].kind != URL:
            return False
        return self._held[0].length == 1 and self._held[0].at[0] == b"/"

    cdef int _hand_over(self) except -1:
        """The held head is whole: give a RequestSink its URL and its header
        section (from the first name to the end of the last value) in one
        call, and answer no more requests of this read here (_release)."""
        cdef Span *first
        cdef Span *last
        cdef int i = 0
        self._holding = False
        self._hello = False
        url = b""
        head = b""
        if self._nheld and self._held[0].kind == URL:
            url = self._held[0].at[:self._held[0].length]
            i = 1
        if i < self._nheld:
            first = &self._held[i]
            last = &self._held[self._nheld - 1]
            head = first.at[:last.at + last.length - first.at]
        self._nheld = 0
        self._sink._add_head(url, head, self._nfields)
        return 0

    cdef int _release(self) except -1:
        """Make the held callbacks, in order, and stop holding for the rest
        of this read."""
        cdef int i
        cdef Span *span
        self._holding = False
        self._hello = False
        if self._on_message_begin is not None:
            self._on_message_begin()
        for i in range(self._nheld):
            span = &self._held[i]
            chunk = span.at[:span.length]
            if span.kind == URL:
                self._deliver_url(chunk)
            elif span.kind == FIELD:
                self._header_field(chunk)
            else:
                self._header_value(chunk)
        self._nheld = 0
        return 0

    cdef void _release_at_end(self, ll.llhttp_errno_t err) noexcept:
        """``_release`` outside llhttp: a callback that fails here fails the
        parser as it would have inside llhttp_execute (unless it failed already)."""
        try:
            self._release()
        except BaseException as exc:
            if err == ll.HPE_OK:
                _data_error(self, exc, "callback error")
                self._p.error = ll.HPE_USER

    # -- httptools' header assembly --------------------------------------------

    cdef int _deliver_url(self, bytes chunk) except -1:
        if self._sink is not None:
            self._sink._add_url(chunk)
        elif self._on_url is not None:
            self._on_url(chunk)
        return 0

    cdef int _flush_header(self) except -1:
        if self._value is not None:
            name = self._name
            value = self._value
            self._name = self._value = None
            if self._sink is not None:
                self._sink._add_header(name, value)
            else:
                self._on_header(name, value)
        return 0

    cdef int _header_field(self, bytes chunk) except -1:
        if self._on_header is None and self._sink is None:
            return 0
        self._flush_header()
        self._name = chunk if self._name is None else self._name + chunk
        return 0

    cdef int _header_value(self, bytes chunk) except -1:
        if self._on_header is None and self._sink is None:
            return 0
        self._value = chunk if self._value is None else self._value + chunk
        return 0


# llhttp callbacks.  Each one catches what the protocol raises, keeps it for
# the parse error's __context__ and returns what httptools returns, so llhttp
# stops with the same error code and reason.

cdef int _cb_message_begin(ll.llhttp_t *p) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    self._in_message = True
    if self._hello or self._sink is not None:
        self._holding = True
        self._nheld = 0
        self._nfields = 0
        return 0
    try:
        if self._on_message_begin is not None:
            self._on_message_begin()
    except BaseException as exc:
        self._error = exc
        return -1
    return 0


cdef int _data_error(HttpRequestParser self, BaseException exc, const char *reason) noexcept:
    ll.llhttp_set_error_reason(&self._p, reason)
    self._error = exc
    return ll.HPE_USER


cdef int _cb_url(ll.llhttp_t *p, const char *at, size_t length) noexcept:
    return _on_span(<HttpRequestParser>p.data, URL, at, length)


cdef int _cb_header_field(ll.llhttp_t *p, const char *at, size_t length) noexcept:
    return _on_span(<HttpRequestParser>p.data, FIELD, at, length)


cdef int _cb_header_value(ll.llhttp_t *p, const char *at, size_t length) noexcept:
    return _on_span(<HttpRequestParser>p.data, VALUE, at, length)


cdef inline int _on_span(HttpRequestParser self, SpanKind kind, const char *at, size_t length) noexcept:
    """A piece of the URL, a header name or a value: held while feed_hello
    may answer the request, else delivered as httptools delivers it."""
    if self._holding and self._hold(kind, at, length):
        return 0  # (before the try: no exception state to save on the hot path)
    try:
        if self._holding:
            self._release()
        if kind == FIELD:
            self._header_field(at[:length])
        elif kind == VALUE:
            self._header_value(at[:length])
        else:
            self._deliver_url(at[:length])
    except BaseException as exc:
        return _data_error(self, exc, "`on_header_field` callback error" if kind == FIELD else (
            "`on_header_value` callback error" if kind == VALUE else "`on_url` callback error"))
    return 0


cdef inline Py_ssize_t _body_length(ll.llhttp_t *p) noexcept:
    """The body llhttp expects after this head: its Content-Length (at most
    PY_SSIZE_T_MAX), -1 if chunked, 0 for none."""
    if p.flags & ll.F_CHUNKED:
        return -1
    if p.flags & ll.F_CONTENT_LENGTH:
        return <Py_ssize_t>p.content_length if p.content_length < <uint64_t>PY_SSIZE_T_MAX else PY_SSIZE_T_MAX
    return 0


cdef int _cb_headers_complete(ll.llhttp_t *p) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    if self._holding and self._hello and self._answerable():
        return 0  # no body follows: the request completes next
    try:
        if self._holding:
            if self._sink is not None:
                self._hand_over()
            else:
                self._release()
        self._flush_header()
        if self._sink is not None:
            self._sink._head_done(_method_name(p), self._version(), ll.llhttp_should_keep_alive(p), _body_length(p))
        elif self._on_headers_complete is not None:
            self._on_headers_complete()
    except BaseException as exc:
        self._error = exc
        return -1
    return 1 if p.upgrade else 0


cdef int _cb_body(ll.llhttp_t *p, const char *at, size_t length) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    try:
        if self._sink is not None:
            self._sink._add_body(at[:length])
        elif self._on_body is not None:
            self._on_body(at[:length])
    except BaseException as exc:
        return _data_error(self, exc, "`on_body` callback error")
    return 0


cdef int _cb_message_complete(ll.llhttp_t *p) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    self._in_message = False
    try:
        if self._holding:
            self._holding = False
            self.answered += 1
            if self._sink is not None:
                self._sink._emit(self._replies[p.method == ll.HTTP_HEAD])
            else:
                self._write(self._replies[p.method == ll.HTTP_HEAD])
        elif self._sink is not None:
            self._sink._message_done()
        elif self._on_message_complete is not None:
            self._on_message_complete()
    except BaseException as exc:
        self._error = exc
        return -1
    return 0


cdef int _cb_chunk_header(ll.llhttp_t *p) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    try:
        if self._name is not None or self._value is not None:
            raise HttpParserError("invalid headers state")
        if self._on_chunk_header is not None:
            self._on_chunk_header()
    except BaseException as exc:
        self._error = exc
        return -1
    return 0


cdef int _cb_chunk_complete(ll.llhttp_t *p) noexcept:
    cdef HttpRequestParser self = <HttpRequestParser>p.data
    try:
        self._flush_header()
        if self._on_chunk_complete is not None:
            self._on_chunk_complete()
    except BaseException as exc:
        self._error = exc
        return -1
    return 0
