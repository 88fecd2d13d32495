# cython: language_level=3
# Declarations of fastmux.http._parser_c (see the .pyx), shared so that the
# compiled HTTP protocol (_protocol_c) calls feed_hello as a C method.
from libc.stdint cimport uint64_t

from fastmux.includes cimport llhttp as ll

# Spans held per request: the URL and up to 32 header fields with values.  A
# request with more headers than that is released (its callbacks are made)
# when its 33rd arrives: it is answered in Python, its headers delivered one
# by one.
cdef enum:
    MAX_HELD = 65

cdef enum SpanKind:
    URL
    FIELD
    VALUE

cdef struct Span:
    SpanKind kind
    const char *at
    size_t length


cdef class RequestSink:
    # The request events as C methods: a protocol that is a RequestSink
    # (the compiled HttpProtocol) is fed through these, not through Python
    # callbacks.  The arguments are what httptools' callbacks give (and,
    # for _head_done, what get_method, get_http_version and
    # should_keep_alive return, and the body's length: its Content-Length,
    # -1 if chunked, 0 for none), _add_head for a head held whole (see the
    # .pyx's module doc), and _emit for feed_hello's answers.
    cdef _add_url(self, bytes url)
    cdef _add_header(self, bytes name, bytes value)
    cdef _add_head(self, bytes url, bytes head, Py_ssize_t nfields)
    cdef _head_done(self, bytes method, str version, bint keep_alive, Py_ssize_t length)
    cdef _add_body(self, bytes chunk)
    cdef _message_done(self)
    cdef _emit(self, bytes reply)


cdef class HttpRequestParser:
    cdef ll.llhttp_t _p
    cdef ll.llhttp_settings_t _settings
    cdef object _on_message_begin, _on_url, _on_header, _on_headers_complete
    cdef object _on_body, _on_message_complete, _on_chunk_header, _on_chunk_complete
    # The header being assembled: delivered when the next field begins or
    # the head (or a chunk's trailers) ends, as httptools does.
    cdef bytes _name
    cdef bytes _value
    cdef RequestSink _sink  # the protocol when it is one, else None
    cdef object _error  # raised by a callback: the __context__ of the parse error

    # feed_hello
    cdef object _write  # None for a RequestSink: its _emit takes the answers
    cdef bint _hello_set
    cdef object _replies
    cdef int _max_headers
    cdef bint _hello  # requests beginning now may be answered here
    cdef bint _holding  # the current request's callbacks are held (hello, or a RequestSink's head)
    cdef bint _in_message
    cdef int _nheld
    cdef int _nfields
    cdef Span _held[MAX_HELD]
    cdef readonly uint64_t answered  # requests feed_hello answered (no callbacks made)

    cpdef feed_hello(self, data, replies)
    cdef str _version(self)
    cdef _execute(self, data, bint hello)
    cdef _parse_error(self, ll.llhttp_errno_t errno)
    cdef bint _hold(self, SpanKind kind, const char *at, size_t length) noexcept
    cdef bint _answerable(self) noexcept
    cdef int _hand_over(self) except -1
    cdef int _release(self) except -1
    cdef void _release_at_end(self, ll.llhttp_errno_t err) noexcept
    cdef int _deliver_url(self, bytes chunk) except -1
    cdef int _flush_header(self) except -1
    cdef int _header_field(self, bytes chunk) except -1
    cdef int _header_value(self, bytes chunk) except -1
