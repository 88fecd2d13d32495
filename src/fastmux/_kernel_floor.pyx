# cython: language_level=3, embedsignature=True
"""The kernel's own cost, timed from C: the floor no wrapper can beat.

``fastmux bench selectors`` reports every selector's time beside these, so a
reader sees how much each spends above the kernel.  Each function runs its
syscall loop with the GIL released and returns nanoseconds per operation.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport errno

from fastmux.includes cimport system as c
from fastmux.includes.system cimport epoll_event, timespec


cdef inline double now() noexcept nogil:
    cdef timespec ts
    c.clock_gettime(c.CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1e9 + ts.tv_nsec


cdef int *fd_array(fds, int *count) except NULL:
    """A C copy of the ints in ``fds``; its length goes to ``count``.  Copied
    from a tuple snapshot, so a len() that disagrees with the iteration
    cannot overrun the buffer, and freed again if an item is not an int."""
    fds = tuple(fds)
    cdef int n = len(fds)
    cdef int i
    cdef int *out = <int *>PyMem_Malloc(max(n, 1) * sizeof(int))
    if out == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            out[i] = fds[i]
    except BaseException:
        PyMem_Free(out)
        raise
    count[0] = n
    return out


def epoll_wait_ns(int epfd, int maxevents, long iterations):
    """ns per ``epoll_wait(epfd, buf, maxevents, 0)``; also returns the
    number of events the last call reported, so callers can check K."""
    cdef epoll_event *buf = <epoll_event *>PyMem_Malloc(maxevents * sizeof(epoll_event))
    cdef long i
    cdef int n = 0
    cdef double t0, t1
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            t0 = now()
            for i in range(iterations):
                n = c.epoll_wait(epfd, buf, maxevents, 0)
            t1 = now()
        if n < 0:
            raise OSError(errno, "epoll_wait failed")
        return (t1 - t0) / iterations, n
    finally:
        PyMem_Free(buf)


def epoll_ctl_add_del_ns(int epfd, fds, long rounds):
    """ns per fd for ``EPOLL_CTL_ADD`` (EPOLLIN) followed by ``EPOLL_CTL_DEL``."""
    cdef int nfds
    cdef int *arr = fd_array(fds, &nfds)
    cdef epoll_event ev
    cdef long r
    cdef int i, bad = 0
    cdef double t0, t1
    ev.events = c.EPOLLIN
    try:
        with nogil:
            t0 = now()
            for r in range(rounds):
                for i in range(nfds):
                    ev.data.fd = arr[i]
                    bad |= c.epoll_ctl(epfd, c.EPOLL_CTL_ADD, arr[i], &ev)
                    bad |= c.epoll_ctl(epfd, c.EPOLL_CTL_DEL, arr[i], &ev)
            t1 = now()
        if bad:
            raise OSError(errno, "epoll_ctl failed")
        return (t1 - t0) / (rounds * nfds)
    finally:
        PyMem_Free(arr)


def epoll_ctl_mod_ns(int epfd, fds, long rounds):
    """ns per ``EPOLL_CTL_MOD`` on registered fds, alternating IN and IN|OUT."""
    cdef int nfds
    cdef int *arr = fd_array(fds, &nfds)
    cdef epoll_event ev
    cdef long r
    cdef int i, bad = 0
    cdef double t0, t1
    try:
        with nogil:
            t0 = now()
            for r in range(rounds):
                ev.events = c.EPOLLIN | c.EPOLLOUT if r & 1 else c.EPOLLIN
                for i in range(nfds):
                    ev.data.fd = arr[i]
                    bad |= c.epoll_ctl(epfd, c.EPOLL_CTL_MOD, arr[i], &ev)
            t1 = now()
        if bad:
            raise OSError(errno, "epoll_ctl failed")
        return (t1 - t0) / (rounds * nfds)
    finally:
        PyMem_Free(arr)
