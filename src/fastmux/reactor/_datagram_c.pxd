# cython: language_level=3
# Augmenting declarations for fastmux.reactor._datagram_c, which is
# fastmux/reactor/datagram.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here): DatagramTransport becomes an
# extension type on the compiled BaseTransport, its reads and sends C-level.
cimport cython

from fastmux.reactor._transport_c cimport BaseTransport


cdef int EVENT_READ, EVENT_WRITE


cdef class DatagramTransport(BaseTransport):
    cdef public object _datagram_received
    cdef public object _address
    cdef public bint _edge

    @cython.locals(ev=int, old=int)
    cpdef _update(self)
    cpdef _on_io(self, int mask)
    cpdef _io_retry(self)
    cpdef _read_some(self)
    cpdef _write_ready(self)
