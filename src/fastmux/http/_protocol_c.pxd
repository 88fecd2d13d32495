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
from fastmux.http._parser_c cimport HttpRequestParser


cdef class HttpProtocol:
    cdef object __weakref__
    cdef public object _server, _config, _clock, _transport
    cdef public list _hello
    cdef public object _write, _parser, _feed
    cdef public HttpRequestParser _hello_parser  # feed_hello is then a C call
    cdef public bytes _url
    cdef public list _headers, _trailers, _body
    cdef public Py_ssize_t _body_len, _head_bytes, _small
    cdef public bint _in_body, _expect
    cdef public bint _fast, _fast_ok, _careful, _closing, _lingering, _eof, _draining
    cdef public object _queue, _deferred
    cdef public bint _in_drain, _writing_paused, _reading_paused, _native_files, _keep_body
    cdef public Py_ssize_t _wprogress, _nreq
    cdef public object _tkey, _peer, _sendfile, _access
    cdef public double _tsince
