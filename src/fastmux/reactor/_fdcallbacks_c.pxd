# cython: language_level=3
# Augmenting declarations for fastmux.reactor._fdcallbacks_c, which is
# fastmux/reactor/_fdcallbacks.py compiled as it is (see setup.py
# TWIN_MODULES; the rules of _loop_c.pxd hold here).  The loop's dispatch
# reaches an entry's _on_io through Python (it is not a transport); from
# there to the user's callback is C.


cdef int EVENT_READ, EVENT_WRITE


cdef class FdCallbacks


cdef class _FdEntry:
    cdef public FdCallbacks table
    cdef public int fd
    cdef public object fileobj
    cdef public tuple ident
    cdef public object reader
    cdef public object writer
    cdef public bint _io_requeued

    cpdef _on_io(self, int mask)


cdef class FdCallbacks:
    cdef public object _loop
    cdef public object _watch
    cdef public dict _entries
