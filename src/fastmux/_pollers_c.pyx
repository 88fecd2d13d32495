# cython: language_level=3, embedsignature=True
"""Compiled low-level pollers: thin, correct wrappers over epoll, poll and select.

All three share one interface: ``register(fd, events)``, ``modify``,
``unregister``, ``poll(timeout=None, maxevents=-1)`` returning ``[(fd, events)]``,
``close``, ``closed`` and the context-manager protocol.  Timeouts are in
seconds for every backend (``None`` or negative: wait forever).  Event bits
are the poll(2) ones, which epoll shares (EPOLLIN == POLLIN, ...).

Policies common to all backends:
* ``register`` of an fd already registered raises ``FileExistsError`` and
  ``modify``/``unregister`` of an unknown fd raise ``FileNotFoundError`` (epoll's
  errors, applied to poll and select too so the three are interchangeable).
* The GIL is released around a wait that may block; a zero timeout keeps it,
  since the call cannot block and the release would cost more than the wait.
* EINTR is retried against a monotonic deadline after ``PyErr_CheckSignals()``,
  so signal handlers run and may raise (PEP 475).
* One wait at a time per poller: the result buffer is shared, so a second
  thread waiting concurrently gets ``RuntimeError`` instead of corruption.
  Registering from another thread during a wait is fine.
"""
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
# PyMem_* here are debug.h's counting wrappers in FASTMUX_DEBUG builds and the
# CPython functions themselves in release builds.
from fastmux.includes.debug cimport mem_free as PyMem_Free, mem_realloc as PyMem_Realloc
from cpython.object cimport PyObject_AsFileDescriptor
from libc.errno cimport EEXIST, EINTR, ENOENT, errno
from libc.limits cimport INT_MAX
from libc.math cimport ceil
from libc.stdint cimport uint32_t
from libc.string cimport memset

from fastmux.includes cimport system as c
from fastmux.includes.debug cimport FASTMUX_DEBUG, counters, counters_dict
from fastmux.includes.system cimport epoll_event, fd_set, pollfd, timespec, timeval

BACKENDS = ("epoll", "poll", "select")


def _debug_counters():
    """Leak counters of a debug build (FASTMUX_DEBUG=1): C buffers allocated,
    resized and freed, Poller objects created and freed, epoll descriptors
    opened and closed, with the live balances.  ``{}`` in release builds,
    where the counting is compiled out."""
    return counters_dict()

EPOLLIN = c.EPOLLIN
EPOLLPRI = c.EPOLLPRI
EPOLLOUT = c.EPOLLOUT
EPOLLERR = c.EPOLLERR
EPOLLHUP = c.EPOLLHUP
EPOLLRDHUP = c.EPOLLRDHUP
EPOLLRDNORM = c.EPOLLRDNORM
EPOLLRDBAND = c.EPOLLRDBAND
EPOLLWRNORM = c.EPOLLWRNORM
EPOLLWRBAND = c.EPOLLWRBAND
EPOLLMSG = c.EPOLLMSG
EPOLLEXCLUSIVE = c.EPOLLEXCLUSIVE
EPOLLWAKEUP = c.EPOLLWAKEUP
EPOLLONESHOT = c.EPOLLONESHOT
EPOLLET = <uint32_t>c.EPOLLET  # 1u << 31: an int enum would make it negative
POLLIN = c.POLLIN
POLLPRI = c.POLLPRI
POLLOUT = c.POLLOUT
POLLERR = c.POLLERR
POLLHUP = c.POLLHUP
POLLNVAL = c.POLLNVAL
POLLRDHUP = c.POLLRDHUP
FD_SETSIZE = c.FD_SETSIZE

# The stdlib's select.epoll.register() default mask, used by every backend.
cdef uint32_t DEFAULT_MASK = c.POLLIN | c.POLLPRI | c.POLLOUT


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    c.clock_gettime(c.CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int timeout_ms(double timeout) except -2:
    """Seconds -> milliseconds for epoll_wait/poll, rounded up so a wait
    lasts at least as long as asked; negative means forever (-1)."""
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        return -1
    cdef double ms = ceil(timeout * 1e3)
    if ms > INT_MAX:
        raise OverflowError("timeout is too large")
    return <int>ms


cdef int raise_errno(int err) except -1:
    """Raise the OSError subclass for ``err`` (BlockingIOError, ...)."""
    global errno  # the C errno PyErr_SetFromErrno reads, not a new local
    errno = err
    PyErr_SetFromErrno(OSError)
    return -1


cdef int retry_after_eintr(double deadline, double *timeout) except -1:
    """Run signal handlers (which may raise), then shrink the remaining wait."""
    PyErr_CheckSignals()
    if timeout[0] > 0:
        timeout[0] = deadline - monotonic()
        if timeout[0] < 0:
            timeout[0] = 0
    return 0


cdef int fd_of(object fileobj) except -1:
    return PyObject_AsFileDescriptor(fileobj)


cdef object results(Poller self, int n):
    cdef list out = []
    cdef int i
    for i in range(n):
        out.append((self._ready[i].data.fd, self._ready[i].events))
    return out


cdef class Poller:
    """Base of the three pollers; not instantiable on its own."""

    def __cinit__(self):
        self._ready = NULL
        self._ready_cap = 0
        self._nreg = 0
        self._waiting = False
        self._closed = False
        if FASTMUX_DEBUG:
            counters.objects_created += 1

    def __dealloc__(self):
        # Freed only here, never in close(): a thread may still be inside a
        # wait that writes into it when another thread closes the poller.
        PyMem_Free(self._ready)
        if FASTMUX_DEBUG:
            counters.objects_freed += 1

    def __init__(self):
        if type(self) is Poller:
            raise TypeError("Poller is abstract: use Epoll, Poll or Select")

    cdef int _reserve(self, int n) except -1:
        if n <= self._ready_cap:
            return 0
        cdef int cap = self._ready_cap * 2 if self._ready_cap else 16
        while cap < n:
            cap *= 2
        cdef epoll_event *buf = <epoll_event *>PyMem_Realloc(self._ready, cap * sizeof(epoll_event))
        if buf == NULL:
            raise MemoryError()
        self._ready = buf
        self._ready_cap = cap
        return 0

    cdef int _enter_wait(self) except -1:
        if self._closed:
            raise ValueError(f"I/O operation on closed {type(self).__name__.lower()} object")
        if self._waiting:
            raise RuntimeError(f"concurrent poll() on the same {type(self).__name__} object")
        return 0

    cdef int _add(self, int fd, uint32_t events) except -1:
        raise NotImplementedError

    cdef int _mod(self, int fd, uint32_t events) except -1:
        raise NotImplementedError

    cdef int _del(self, int fd) except -1:
        raise NotImplementedError

    cdef int _wait(self, double timeout, int maxevents) except -1:
        raise NotImplementedError

    def register(self, fd, unsigned int eventmask=DEFAULT_MASK):
        """Watch ``fd`` (an int or an object with ``fileno()``) for ``eventmask``."""
        self._add(fd_of(fd), eventmask)

    def modify(self, fd, unsigned int eventmask):
        """Change the events watched on a registered ``fd``."""
        self._mod(fd_of(fd), eventmask)

    def unregister(self, fd):
        """Stop watching ``fd``."""
        self._del(fd_of(fd))

    def poll(self, timeout=None, int maxevents=-1):
        """Wait up to ``timeout`` seconds (None or negative: forever) and
        return a list of ``(fd, events)`` for the ready fds."""
        cdef double t = -1.0 if timeout is None else timeout
        return results(self, self._wait(t, maxevents))

    @property
    def closed(self):
        """True once ``close()`` was called."""
        return self._closed

    def close(self):
        """Release the kernel resources; further use raises ValueError."""
        self._closed = True

    def __enter__(self):
        if self._closed:
            raise ValueError(f"I/O operation on closed {type(self).__name__.lower()} object")
        return self

    def __exit__(self, *exc_info):
        self.close()


cdef class Epoll(Poller):
    """An epoll instance (created with EPOLL_CLOEXEC).

    Extra event flags (``EPOLLET``, ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE``,
    ``EPOLLRDHUP``) may be or'ed into ``eventmask``.  After ``fork()`` parent
    and child share this one kernel object: changes in either affect both
    (``fastmux.selectors.EpollSelector`` handles that; this wrapper is raw).
    """

    def __cinit__(self):
        self._epfd = -1

    def __init__(self):
        self._epfd = c.epoll_create1(c.EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise_errno(errno)
        if FASTMUX_DEBUG:
            counters.fds_opened += 1

    def __dealloc__(self):
        PyMem_Free(self._marked)
        if self._epfd >= 0:
            c.close(self._epfd)
            if FASTMUX_DEBUG:
                counters.fds_closed += 1

    def fileno(self):
        """The epoll instance's own file descriptor."""
        if self._closed:
            raise ValueError("I/O operation on closed epoll object")
        return self._epfd

    def close(self):
        if not self._closed:
            self._closed = True
            if FASTMUX_DEBUG and self._epfd >= 0:
                counters.fds_closed += 1
            c.close(self._epfd)
            self._epfd = -1

    cdef inline int _ctl(self, int op, int fd, uint32_t events) except -1:
        cdef epoll_event ev
        if self._closed:
            raise ValueError("I/O operation on closed epoll object")
        ev.events = events
        ev.data.u64 = 0  # the kernel copies all 8 bytes back: keep them defined
        ev.data.fd = fd
        if c.epoll_ctl(self._epfd, op, fd, &ev) < 0:
            raise_errno(errno)
        return 0

    cdef int _add(self, int fd, uint32_t events) except -1:
        cdef int cap
        cdef unsigned char *marked
        if fd >= self._marked_cap:
            cap = self._marked_cap * 2 if self._marked_cap else 64
            while cap <= fd:
                cap *= 2
            marked = <unsigned char *>PyMem_Realloc(self._marked, cap)
            if marked == NULL:
                raise MemoryError()
            memset(marked + self._marked_cap, 0, cap - self._marked_cap)
            self._marked = marked
            self._marked_cap = cap
        self._ctl(c.EPOLL_CTL_ADD, fd, events)
        if not self._marked[fd]:
            self._marked[fd] = 1
            self._nreg += 1
        return 0

    cdef int _mod(self, int fd, uint32_t events) except -1:
        return self._ctl(c.EPOLL_CTL_MOD, fd, events)

    cdef int _del(self, int fd) except -1:
        # Unmarked even if the kernel refuses (EBADF/ENOENT: already gone).
        if 0 <= fd < self._marked_cap and self._marked[fd]:
            self._marked[fd] = 0
            self._nreg -= 1
        return self._ctl(c.EPOLL_CTL_DEL, fd, 0)

    cdef int _wait(self, double timeout, int maxevents) except -1:
        cdef int n, err, ms
        cdef double deadline = 0
        self._enter_wait()
        if maxevents < 0:
            # Room for every registration, so one call drains all that is ready.
            maxevents = self._nreg if self._nreg > 0 else 1
        elif maxevents == 0:
            raise ValueError("maxevents must be greater than 0, got 0")
        self._reserve(maxevents)
        ms = timeout_ms(timeout)
        if ms > 0:
            deadline = monotonic() + timeout
        while True:
            if ms == 0:
                n = c.epoll_wait(self._epfd, self._ready, maxevents, 0)
                err = errno
            else:
                self._waiting = True
                with nogil:
                    n = c.epoll_wait(self._epfd, self._ready, maxevents, ms)
                    err = errno
                self._waiting = False
            if n >= 0:
                return n
            if err != EINTR:
                return raise_errno(err)
            retry_after_eintr(deadline, &timeout)
            ms = timeout_ms(timeout)


cdef class Poll(Poller):
    """A poll(2) set.  The kernel scans every registered fd on each wait, so
    its cost grows with registrations; prefer Epoll for many fds."""

    def __cinit__(self):
        self._fds = NULL
        self._nfds = 0
        self._fds_cap = 0
        self._slot = NULL
        self._slot_cap = 0
        self._work = NULL
        self._nwork = 0
        self._work_cap = 0
        self._dirty = False

    def __dealloc__(self):
        PyMem_Free(self._fds)
        PyMem_Free(self._slot)
        PyMem_Free(self._work)

    def close(self):
        if not self._closed:
            self._closed = True
            self._nfds = 0
            self._dirty = True

    cdef inline int _index(self, int fd) noexcept:
        if fd < 0 or fd >= self._slot_cap:
            return -1
        return self._slot[fd]

    cdef int _add(self, int fd, uint32_t events) except -1:
        cdef int cap, i
        if self._closed:
            raise ValueError("I/O operation on closed poll object")
        if fd < 0:
            raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
        if self._index(fd) >= 0:
            return raise_errno(EEXIST)
        if fd >= self._slot_cap:
            cap = self._slot_cap * 2 if self._slot_cap else 64
            while cap <= fd:
                cap *= 2
            slot = <int *>PyMem_Realloc(self._slot, cap * sizeof(int))
            if slot == NULL:
                raise MemoryError()
            for i in range(self._slot_cap, cap):
                slot[i] = -1
            self._slot = slot
            self._slot_cap = cap
        if self._nfds == self._fds_cap:
            cap = self._fds_cap * 2 if self._fds_cap else 16
            fds = <pollfd *>PyMem_Realloc(self._fds, cap * sizeof(pollfd))
            if fds == NULL:
                raise MemoryError()
            self._fds = fds
            self._fds_cap = cap
        self._fds[self._nfds].fd = fd
        self._fds[self._nfds].events = <short>events
        self._fds[self._nfds].revents = 0
        self._slot[fd] = self._nfds
        self._nfds += 1
        self._nreg = self._nfds
        self._dirty = True
        return 0

    cdef int _mod(self, int fd, uint32_t events) except -1:
        if self._closed:
            raise ValueError("I/O operation on closed poll object")
        cdef int i = self._index(fd)
        if i < 0:
            return raise_errno(ENOENT)
        self._fds[i].events = <short>events
        self._dirty = True
        return 0

    cdef int _del(self, int fd) except -1:
        if self._closed:
            raise ValueError("I/O operation on closed poll object")
        cdef int i = self._index(fd)
        if i < 0:
            return raise_errno(ENOENT)
        # Keep the array compact: move the last entry into the hole.
        self._nfds -= 1
        if i != self._nfds:
            self._fds[i] = self._fds[self._nfds]
            self._slot[self._fds[i].fd] = i
        self._slot[fd] = -1
        self._nreg = self._nfds
        self._dirty = True
        return 0

    cdef int _wait(self, double timeout, int maxevents) except -1:
        cdef int n, err, ms, i, found
        cdef double deadline = 0
        self._enter_wait()
        if maxevents == 0:
            raise ValueError("maxevents must be greater than 0, got 0")
        if self._dirty:
            if self._nfds > self._work_cap:
                work = <pollfd *>PyMem_Realloc(self._work, self._nfds * sizeof(pollfd))
                if work == NULL:
                    raise MemoryError()
                self._work = work
                self._work_cap = self._nfds
            for i in range(self._nfds):
                self._work[i] = self._fds[i]
            self._nwork = self._nfds
            self._dirty = False
        self._reserve(self._nwork if self._nwork > 0 else 1)
        ms = timeout_ms(timeout)
        if ms > 0:
            deadline = monotonic() + timeout
        while True:
            if ms == 0:
                n = c.poll(self._work, self._nwork, 0)
                err = errno
            else:
                self._waiting = True
                with nogil:
                    n = c.poll(self._work, self._nwork, ms)
                    err = errno
                self._waiting = False
            if n >= 0:
                break
            if err != EINTR:
                return raise_errno(err)
            retry_after_eintr(deadline, &timeout)
            ms = timeout_ms(timeout)
        if maxevents > 0 and n > maxevents:
            n = maxevents
        found = 0
        i = 0
        while found < n and i < self._nwork:
            if self._work[i].revents:
                self._ready[found].events = <unsigned short>self._work[i].revents
                self._ready[found].data.fd = self._work[i].fd
                found += 1
            i += 1
        return found


cdef class Select(Poller):
    """A select(2) set.  Only fds below FD_SETSIZE (1024) can be watched:
    larger ones raise ValueError at ``register``, not later at the wait.
    POLLIN watches readability, POLLOUT writability, POLLPRI exceptional
    conditions (out-of-band data)."""

    def __cinit__(self):
        c.FD_ZERO(&self._rset)
        c.FD_ZERO(&self._wset)
        c.FD_ZERO(&self._xset)
        self._maxfd = -1
        self._fds = <int *>PyMem_Realloc(NULL, c.FD_SETSIZE * sizeof(int))
        self._slot = <int *>PyMem_Realloc(NULL, c.FD_SETSIZE * sizeof(int))
        if self._fds == NULL or self._slot == NULL:
            raise MemoryError()
        for i in range(c.FD_SETSIZE):
            self._slot[i] = -1

    def __dealloc__(self):
        PyMem_Free(self._fds)
        PyMem_Free(self._slot)

    def close(self):
        if not self._closed:
            self._closed = True
            while self._nreg:
                self._del(self._fds[0])

    cdef inline int _check(self, int fd) except -1:
        if self._closed:
            raise ValueError("I/O operation on closed select object")
        if fd < 0 or fd >= c.FD_SETSIZE:
            raise ValueError(f"file descriptor {fd} out of range for select() (FD_SETSIZE is {c.FD_SETSIZE})")
        return 0

    cdef inline void _set(self, int fd, uint32_t events) noexcept:
        if events & c.POLLIN:
            c.FD_SET(fd, &self._rset)
        else:
            c.FD_CLR(fd, &self._rset)
        if events & c.POLLOUT:
            c.FD_SET(fd, &self._wset)
        else:
            c.FD_CLR(fd, &self._wset)
        if events & c.POLLPRI:
            c.FD_SET(fd, &self._xset)
        else:
            c.FD_CLR(fd, &self._xset)

    cdef int _add(self, int fd, uint32_t events) except -1:
        self._check(fd)
        if self._slot[fd] >= 0:
            return raise_errno(EEXIST)
        self._slot[fd] = self._nreg
        self._fds[self._nreg] = fd
        self._nreg += 1
        self._set(fd, events)
        if fd > self._maxfd:
            self._maxfd = fd
        return 0

    cdef int _mod(self, int fd, uint32_t events) except -1:
        self._check(fd)
        if self._slot[fd] < 0:
            return raise_errno(ENOENT)
        self._set(fd, events)
        return 0

    cdef int _del(self, int fd) except -1:
        cdef int i, last
        if fd >= 0 and fd < c.FD_SETSIZE and self._slot[fd] >= 0:
            i = self._slot[fd]
            self._set(fd, 0)
            self._slot[fd] = -1
            self._nreg -= 1
            if i != self._nreg:
                last = self._fds[self._nreg]
                self._fds[i] = last
                self._slot[last] = i
            if fd == self._maxfd:
                self._maxfd = -1
                for i in range(self._nreg):
                    if self._fds[i] > self._maxfd:
                        self._maxfd = self._fds[i]
            return 0
        self._check(fd)
        return raise_errno(ENOENT)

    cdef int _wait(self, double timeout, int maxevents) except -1:
        cdef fd_set r, w, x
        cdef timeval tv
        cdef timeval *tvp
        cdef int n, err, i, fd, found, nfds
        cdef uint32_t ev
        cdef double deadline = 0, whole
        self._enter_wait()
        if maxevents == 0:
            raise ValueError("maxevents must be greater than 0, got 0")
        if timeout != timeout:
            raise ValueError("Invalid value NaN (not a number)")
        if timeout > INT_MAX:
            raise OverflowError("timeout is too large")
        self._reserve(self._nreg if self._nreg > 0 else 1)
        if timeout > 0:
            deadline = monotonic() + timeout
        while True:
            # select() overwrites its sets: hand it copies.
            r = self._rset
            w = self._wset
            x = self._xset
            nfds = self._maxfd + 1
            if timeout < 0:
                tvp = NULL
            else:
                whole = <long>timeout
                tv.tv_sec = <long>whole
                tv.tv_usec = <long>ceil((timeout - whole) * 1e6)
                if tv.tv_usec >= 1000000:
                    tv.tv_sec += 1
                    tv.tv_usec -= 1000000
                tvp = &tv
            if timeout == 0:
                n = c.select(nfds, &r, &w, &x, tvp)
                err = errno
            else:
                self._waiting = True
                with nogil:
                    n = c.select(nfds, &r, &w, &x, tvp)
                    err = errno
                self._waiting = False
            if n >= 0:
                break
            if err != EINTR:
                return raise_errno(err)
            retry_after_eintr(deadline, &timeout)
        found = 0
        if n == 0:
            return 0
        for i in range(self._nreg):
            fd = self._fds[i]
            if fd >= nfds:
                continue  # registered during the wait
            ev = 0
            if c.FD_ISSET(fd, &r):
                ev |= c.POLLIN
            if c.FD_ISSET(fd, &w):
                ev |= c.POLLOUT
            if c.FD_ISSET(fd, &x):
                ev |= c.POLLPRI
            if ev:
                self._ready[found].events = ev
                self._ready[found].data.fd = fd
                found += 1
                if found == maxevents:
                    break
        return found
