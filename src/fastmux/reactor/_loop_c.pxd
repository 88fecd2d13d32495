# cython: language_level=3
# Augmenting declarations for fastmux.reactor._loop_c, which is
# fastmux/reactor/loop.py compiled as it is (see setup.py TWIN_MODULES).
# Cython finds this file by the extension's qualified name under the include
# path (src/); Cython 3 needs no __init__.pxd in src/fastmux/reactor for that.
# (Checked by tests/reactor/test_twin.py: without it the classes stay plain
# Python ones.)  The .py stays the one source of the logic and runs unchanged
# as the pure-Python twin; this file gives its classes C attributes and
# C-level methods.
#
# Rules for keeping the twins equal (they hold for every reactor .pxd):
# * every attribute that other modules or tests read or write is ``public``;
# * flags are ``bint`` and sizes ``Py_ssize_t``, which Python code sees as
#   bool and int as before;
# * a method is ``cpdef`` (never plain ``cdef``) so Python can still call it,
#   and a subclass that overrides it declares it in its own .pxd too.
cimport cython

from fastmux.reactor._fdcallbacks_c cimport FdCallbacks
from fastmux.reactor._fdwatch_c cimport FdWatch
# The dispatch calls a transport's _on_io through this base: a C call into
# whichever compiled transport owns the fd.
from fastmux.reactor._transport_c cimport BaseTransport
from fastmux.reactor._handles_c cimport Handle, TimerHandle


cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1


cdef inline object _call_in_context(object ctx, object callback, tuple args):
    """``ctx.run(callback, *args)`` without building its argument tuple."""
    PyContext_Enter(ctx)
    try:
        return callback(*args)
    finally:
        PyContext_Exit(ctx)


cdef class Reactor:
    cdef dict __dict__          # callers may hang their own attributes on a reactor
    cdef object __weakref__
    cdef public bint _closed
    cdef public FdWatch _watch
    cdef public bint _edge
    cdef public object _stream_cls
    cdef public object _ready               # collections.deque of Handle
    cdef public list _timers                # heap of (when, seq, TimerHandle)
    cdef public Py_ssize_t _timer_seq
    cdef public Py_ssize_t _cancelled_timers
    cdef public list _requeue
    cdef public FdCallbacks _fdcb
    cdef public dict _owners
    cdef public set _servers
    cdef public bint _stopping
    cdef public bint _running
    cdef public object _thread_id
    cdef public object _exception_handler
    cdef public object _default_executor
    cdef public object _signals
    cdef public bint _wake_pending
    cdef public Py_ssize_t _iterations
    cdef public double _clock_resolution
    cdef public object _waker

    @cython.locals(transport=BaseTransport, early=Py_ssize_t, done=Py_ssize_t, end=double,
                   events=list, n=Py_ssize_t, i=Py_ssize_t, mask=int)
    cpdef _run_once(self)
    cpdef _run_ready(self, Py_ssize_t ntodo)
    cpdef _requeue_io(self, obj)
    @cython.locals(ours=Handle)
    cpdef _run_handle(self, h)
    cpdef _wake_up(self)
    cpdef _schedule(self, h)
