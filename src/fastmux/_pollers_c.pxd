# cython: language_level=3
# The compiled pollers' C-level interface, shared with the selectors module.
from libc.stdint cimport uint32_t

from fastmux.includes.system cimport epoll_event, fd_set, pollfd


cdef class Poller:
    # Every backend reports the last wait's results here, epoll-shaped
    # ({events, data.fd}), so callers consume one format.  Only _wait()
    # writes it and only while holding _waiting, so a register() from
    # another thread during a wait can never resize it under the kernel.
    cdef epoll_event *_ready
    cdef int _ready_cap
    cdef int _nreg
    cdef bint _waiting
    cdef bint _closed

    cdef int _add(self, int fd, uint32_t events) except -1
    cdef int _mod(self, int fd, uint32_t events) except -1
    cdef int _del(self, int fd) except -1
    cdef int _wait(self, double timeout, int maxevents) except -1
    cdef int _reserve(self, int n) except -1
    cdef int _enter_wait(self) except -1


cdef class Epoll(Poller):
    cdef int _epfd
    # fd -> registered here?  Counts each fd once, so fds closed without
    # unregister (which the kernel drops by itself) and reused cannot make
    # _nreg, and with it the event buffer, grow without bound.
    cdef unsigned char *_marked
    cdef int _marked_cap

    cdef inline int _ctl(self, int op, int fd, uint32_t events) except -1


cdef class Poll(Poller):
    cdef pollfd *_fds        # authoritative, compact
    cdef int _nfds
    cdef int _fds_cap
    cdef int *_slot          # fd -> index into _fds, -1 when absent
    cdef int _slot_cap
    cdef pollfd *_work       # the copy handed to poll(2)
    cdef int _nwork
    cdef int _work_cap
    cdef bint _dirty

    cdef inline int _index(self, int fd) noexcept


cdef class Select(Poller):
    cdef fd_set _rset
    cdef fd_set _wset
    cdef fd_set _xset
    cdef int *_fds           # registered fds, compact
    cdef int *_slot          # fd -> index into _fds, -1 when absent (FD_SETSIZE)
    cdef int _maxfd

    cdef inline int _check(self, int fd) except -1
    cdef inline void _set(self, int fd, uint32_t events) noexcept
