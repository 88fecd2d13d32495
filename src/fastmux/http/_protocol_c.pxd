# cython: language_level=3
# Augmenting declarations for fastmux.http._protocol_c, which is
# fastmux/http/protocol.py compiled as it is (see setup.py TWIN_MODULES),
# found by the extension's qualified name under the include path (src/).
# The .py stays the one source and the pure-Python twin; this file makes
# HttpProtocol an extension type with C attributes, so its per-read work
# (data_received and the parser callbacks) runs as C, not bytecode.
#
# The rules of src/fastmux/reactor/_loop_c.pxd hold here too: every attribute
# is ``public`` (tests and the shutdown registry read them), flags are
# ``bint`` and counts ``Py_ssize_t``.
cimport cython

from fastmux.http._parser_c cimport HttpRequestParser, RequestSink
from fastmux.http._app_c cimport render
from fastmux.http._request_c cimport find_field, new_request, split_head, split_target


# A RequestSink: the compiled parser calls the _add_*/_done methods as C.
cdef class HttpProtocol(RequestSink):
    cdef object __weakref__
    cdef public object _server, _config, _clock, _transport
    cdef public list _hello
    cdef public object _write, _parser, _feed
    cdef public HttpRequestParser _hello_parser  # feed_hello is then a C call
    cdef public bytes _url, _method
    cdef public str _version
    cdef public bint _keep_alive
    cdef public list _headers, _trailers, _body
    cdef public bytes _head
    cdef public Py_ssize_t _nhead
    cdef public Py_ssize_t _body_len, _head_bytes, _small
    cdef public bint _in_body, _expect
    cdef public bint _fast, _fast_ok, _careful, _closing, _lingering, _eof, _draining
    cdef public object _queue, _deferred
    cdef public bint _in_drain, _writing_paused, _reading_paused, _native_files, _hello_fast
    cdef public object _app, _static
    cdef public bytes _method_bytes
    cdef public str _method_str
    cdef public Py_ssize_t _max_url, _max_headers, _max_body
    cdef public Py_ssize_t _wprogress, _nreq
    cdef public object _tkey, _peer, _sendfile, _access
    cdef public double _tsince
    cdef public bint _batch
    cdef public bytes _out1
    cdef public list _out
    cdef public Py_ssize_t _out_size

    cdef _add_url(self, bytes url)
    cdef _add_header(self, bytes name, bytes value)
    cdef _add_head(self, bytes url, bytes head, Py_ssize_t nfields)
    cdef list _fields(self)
    cdef _head_done(self, bytes method, str version, bint keep_alive, Py_ssize_t length)
    cdef _add_body(self, bytes chunk)
    cdef _message_done(self)
    cdef _emit(self, bytes data)

    # The per-request path between them: C calls too.
    @cython.locals(nfields=Py_ssize_t)
    cdef _request(self, bytes url)
    cdef _respond(self, bytes method, bytes url, str version, headers, list body, Py_ssize_t body_len,
                  bint keep, list trailers)
    cdef _answer(self, bytes method, bytes url, str version, headers, list body, Py_ssize_t body_len,
                 bint keep, int conn, list trailers)
    cdef _push(self, reply)
    cdef _flush_out(self)
    cdef _refresh_fast(self)
    cdef _defer(self, tuple item)
    cdef _partial(self, Py_ssize_t nbytes)
