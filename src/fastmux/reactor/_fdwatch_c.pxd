# cython: language_level=3
# Augmenting declarations for fastmux.reactor._fdwatch_c, which is
# fastmux/reactor/_fdwatch.py compiled as it is (see setup.py TWIN_MODULES).
# The compiled loop (_loop_c) uses this twin and the pure loop the .py, so
# each loop twin's tests cover its FdWatch.  Typing FdWatch turns the wait the
# loop makes every iteration -- deadline to timeout, the selector call, the
# spurious-wakeup count -- into C instead of a Python frame.  The rules of
# _loop_c.pxd hold here: every attribute ``public``, flags ``bint``, counts
# ``Py_ssize_t``.
cimport cython


cdef class FdWatch:
    # No __dict__: with one, every call of a cpdef method below would first
    # look for a per-instance override.
    cdef public str name
    cdef public object _sel
    cdef public bint flags_ok, edge, _exclusive_ok
    cdef public double resolution, _fine_below
    cdef public object _on_stale, _on_bad_fd
    cdef public dict _always, _flags
    cdef public list _fine_fds
    cdef public Py_ssize_t _spurious, rebuilds, spurious_total, stale_total

    # What the loop calls every iteration: C calls from _loop_c, which types
    # its _watch as this class.
    cdef public bint _flat_native
    # Both return a list (the loop reads it in C).
    cpdef list poll(self)
    @cython.locals(now=double, timeout=double)
    cpdef list wait(self, deadline)
    cpdef _ready_list(self, timeout)
