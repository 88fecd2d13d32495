# cython: language_level=3
# Augmenting declarations for fastmux.reactor._handles_c, which is
# fastmux/reactor/handles.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here).


cdef class Handle:
    cdef object __weakref__
    cdef public object _callback
    cdef public object _args
    cdef public bint _cancelled
    cdef public object _context


cdef class TimerHandle(Handle):
    cdef public double _when
    cdef public object _loop
    cdef public bint _scheduled
