# cython: language_level=3
# Augmenting declarations for fastmux.reactor._transport_c, which is
# fastmux/reactor/_transport.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here).  BaseTransport is the cdef base of the
# compiled stream and datagram transports (_stream_c, _datagram_c), and the
# type through which the compiled loop calls their _on_io in C.
#
# It types _loop as the compiled Reactor, so transports reach the loop in C;
# _loop_c.pxd cimports this file in turn.  That cycle is fine for Cython, and
# at run time each module creates its own types before it imports the
# other's; loop.py only imports the modules that subclass BaseTransport
# where it first needs them, after both have finished importing.
from fastmux.reactor._loop_c cimport Reactor


cdef class BaseTransport:
    # Field order is memory layout.  What every request reads (dispatch, recv,
    # write) comes first, in the object's first 64 bytes with its header: with
    # thousands of connections each line of a transport a request touches is a
    # likely cache miss.
    cdef public int _fd
    cdef public int _events
    cdef public object _protocol
    cdef public object _wq                  # collections.deque, or None until first used
    cdef public bint _closing
    cdef public bint _conn_lost
    cdef public bint _proto_paused
    cdef public bint _made
    cdef public Reactor _loop
    cdef public object _watch
    cdef public object _sock
    cdef object __weakref__
    cdef public Py_ssize_t _wsize
    cdef public Py_ssize_t _high
    cdef public Py_ssize_t _low
    cdef public bint _sock_gone
    cdef public bint _io_requeued
    cdef public object _lost_handle

    # Overridden by every transport (and declared again in its .pxd).
    cpdef _queue(self)
    cpdef _on_io(self, int mask)
    cpdef _update(self)
    cpdef _fatal_error(self, exc, where)
    cpdef _force_close(self, exc)
