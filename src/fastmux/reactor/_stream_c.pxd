# cython: language_level=3
# Augmenting declarations for fastmux.reactor._stream_c, which is
# fastmux/reactor/stream.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here).  The stream transports become
# extension types on the compiled BaseTransport, with the hot methods C-level;
# this file also holds the C socket I/O that stream.py's
# `if cython.compiled:` branches call.
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from libc.string cimport strerror
from libc cimport errno as cerr  # (EWOULDBLOCK == EAGAIN on Linux)

from fastmux.includes cimport system as c
from fastmux.reactor._transport_c cimport BaseTransport


cdef extern from "Python.h":
    # Raw references, so a failed recv can drop the buffer and a short one
    # can shrink it in place (what socket.recv itself does).
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n) except NULL
    int _resize_bytes "_PyBytes_Resize"(PyObject **b, Py_ssize_t n) except -1
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *b)
    void _decref "Py_DECREF"(PyObject *o)


# Module constants that the hot path tests against: C ints here, so
# `mask & EVENT_READ` is integer arithmetic (they are no longer attributes of
# the compiled module; nothing reads them from it).
cdef int EVENT_READ, EVENT_WRITE


cdef class StreamTransport(BaseTransport):
    # What a request reads first (see BaseTransport): one cache line.
    cdef public object _data_received
    cdef public object _reader_type
    cdef public Py_ssize_t max_read_size
    cdef public bint _wopen
    cdef public bint _buffered
    # Compiled twin only, private to _sock_recv below (stream.py never sees it).
    cdef bint _recv_direct
    cdef public bint _pass_protocol
    cdef public bint _reading
    cdef public bint _read_closed
    cdef public bint _eof_written
    cdef public bint _connecting
    cdef public object _server
    cdef public object _extra
    cdef public object _peer
    cdef public object _connector
    cdef public object _flushed

    @cython.locals(ev=int, old=int)
    cpdef _update(self)
    @cython.locals(data=bytes)
    cpdef _on_io(self, int mask)
    cpdef _deliver(self, bytes data)
    @cython.locals(n=Py_ssize_t)
    cpdef write(self, data)
    @cython.locals(left=Py_ssize_t, size=Py_ssize_t, total=Py_ssize_t, n=Py_ssize_t)
    cpdef _flush(self)
    cpdef _write_ready(self)
    cpdef bint _read_buffered(self) except -1
    cpdef resume_reading(self)


# asyncio's StreamReaderProtocol.data_received -> StreamReader.feed_data, as C calls.
cdef bint _feed_reader(object protocol, object reader_type, bytes data) except -1


cdef class _EdgeStreamTransport(StreamTransport):
    cpdef _update(self)
    cpdef _on_io(self, int mask)
    cpdef _io_retry(self)
    @cython.locals(budget=Py_ssize_t, data=bytes, size=Py_ssize_t)
    cpdef _drain(self)
    cpdef resume_reading(self)


# -- the compiled twin's socket I/O -------------------------------------------------
# stream.py calls these only under `if cython.compiled:`; its pure-Python branch
# calls sock.recv / sock.send instead.  Same results, and a failed call goes to
# the transport's _fatal_error as the pure branch's except clause sends it,
# without the socket method's argument parsing, timeout bookkeeping and GIL release
# (a transport's socket is non-blocking, so the call never waits).  The
# transport owns its fd for as long as it is registered, which is the only
# time these run.

# Two ways to get the bytes, chosen per transport from its last read:
# * small reads land in one shared buffer and only what arrived is copied
#   into the bytes object.  For small messages that is far cheaper than what
#   socket.recv(n) does (malloc n bytes, then shrink them): its malloc/free
#   of 64 KiB chunks was a sixth of the echo server's user time at 64 B.
#   One buffer for the process is safe: the GIL is held from recv to copy.
# * after a read of RECV_COPY_MAX bytes or more, recv goes straight into a
#   new bytes object of `size` that is then shrunk (socket.recv's way): at
#   16 KiB the copy out of the shared buffer was 30% of the user time.
cdef char _recv_buf[65536]
cdef enum:
    RECV_COPY_MAX = 4096


cdef inline object _sock_recv(StreamTransport t, Py_ssize_t size):
    """recv(2) up to ``size`` bytes: bytes (b"" at EOF), or None when there is
    nothing to read (EAGAIN) or the call failed; a failure has then been
    reported with ``_io_failed`` (the transport is lost)."""
    cdef Py_ssize_t n
    if t._recv_direct or size > <Py_ssize_t>sizeof(_recv_buf):
        data = _sock_recv_direct(t, size)
        if data is not None:
            t._recv_direct = PyBytes_GET_SIZE(data) >= RECV_COPY_MAX
        return data
    while True:
        n = c.recv(t._fd, _recv_buf, <size_t>size, 0)
        if n >= 0:
            t._recv_direct = n >= RECV_COPY_MAX
            return PyBytes_FromStringAndSize(_recv_buf, n)
        if cerr.errno == cerr.EINTR:  # PEP 475: run the signal handlers, then retry
            PyErr_CheckSignals()
            continue
        if cerr.errno != cerr.EAGAIN:
            _io_failed(t, cerr.errno, "recv")
        return None


cdef inline object _sock_recv_direct(StreamTransport t, Py_ssize_t size):
    """_sock_recv into a new bytes object of ``size``, shrunk to what arrived."""
    cdef Py_ssize_t n
    cdef int err
    cdef PyObject *buf = _new_bytes(NULL, size)
    while True:
        n = c.recv(t._fd, _bytes_data(buf), <size_t>size, 0)
        if n >= 0:
            break
        err = cerr.errno
        if err == cerr.EINTR:
            try:
                PyErr_CheckSignals()
            except BaseException:
                _decref(buf)
                raise
            continue
        _decref(buf)
        if err != cerr.EAGAIN:
            _io_failed(t, err, "recv")
        return None
    if n != size:
        _resize_bytes(&buf, n)  # frees it and raises MemoryError on failure
    result = <object>buf
    _decref(buf)  # the reference _new_bytes gave us; result holds its own
    return result


cdef inline Py_ssize_t _sock_send(StreamTransport t, bytes data) except -2:
    """send(2) with MSG_NOSIGNAL: bytes taken (0 when the socket is full), or
    -1 when the call failed, which has then been reported with ``_io_failed``."""
    cdef Py_ssize_t n
    while True:
        n = c.send(t._fd, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), c.MSG_NOSIGNAL)
        if n >= 0:
            return n
        if cerr.errno == cerr.EINTR:
            PyErr_CheckSignals()
            continue
        if cerr.errno == cerr.EAGAIN:
            return 0
        _io_failed(t, cerr.errno, "send")
        return -1


cdef inline int _io_failed(StreamTransport t, int err, str where) except -1:
    """What the pure branch's ``except OSError`` does: the OSError subclass
    that socket.recv/send raises for ``err``, to the transport's _fatal_error.
    Errors come back as values so that the per-request path enters no
    try block (each costs an exception-state save and restore)."""
    t._fatal_error(OSError(err, (<bytes>strerror(err)).decode("utf-8", "replace")), where)
    return 0
