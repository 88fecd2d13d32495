# cython: language_level=3
# Augmenting declarations for fastmux.reactor._aiocore_c, which is
# fastmux/reactor/_aiocore.py compiled as it is (see setup.py TWIN_MODULES;
# the rules of _loop_c.pxd hold here).  AsyncioCore extends the compiled
# Reactor, so the asyncio face's call_soon/call_at reach the ready queue and
# the timer heap in C.
from fastmux.reactor._loop_c cimport Reactor


cdef dict _tasks_namespace

cpdef object _from_caller(object h)


cdef class AsyncioCore(Reactor):
    cdef public bint _debug
    cdef public object _task_factory

    cpdef _new_task(self, coro, name, context)
    cpdef _enqueue(self, callback, tuple args, context, str method)
    cpdef _run_handle(self, h)
