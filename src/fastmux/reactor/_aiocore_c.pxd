# cython: language_level=3
# Augmenting declarations for fastmux.reactor._aiocore_c, which is
# fastmux/reactor/_aiocore.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here).  AsyncioCore extends the compiled
# Reactor, so the asyncio face's call_soon/call_at reach the ready queue and
# the timer heap in C.
from fastmux.reactor._loop_c cimport Reactor


cdef class AsyncioCore(Reactor):
    cdef public bint _debug

    cpdef _enqueue(self, callback, tuple args, context, str method)
