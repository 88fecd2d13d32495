# cython: language_level=3
# C declarations of the system calls the core wraps.  Constants carry no
# values here: the system headers supply them, so they are right on every
# architecture.  Integer types come from libc.stdint, never hand-rolled.
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

    enum:
        EPOLL_CLOEXEC
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLLIN
        EPOLLPRI
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDNORM
        EPOLLRDBAND
        EPOLLWRNORM
        EPOLLWRBAND
        EPOLLMSG
        EPOLLRDHUP
        EPOLLEXCLUSIVE
        EPOLLWAKEUP
        EPOLLONESHOT
        EPOLLET


cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t

    cdef struct pollfd:
        int fd
        short events
        short revents

    int poll(pollfd *fds, nfds_t nfds, int timeout)

    enum:
        POLLIN
        POLLPRI
        POLLOUT
        POLLERR
        POLLHUP
        POLLNVAL
        POLLRDHUP


cdef extern from "<sys/select.h>" nogil:
    ctypedef struct fd_set:
        pass

    cdef struct timeval:
        long tv_sec
        long tv_usec

    void FD_ZERO(fd_set *s)
    void FD_SET(int fd, fd_set *s)
    void FD_CLR(int fd, fd_set *s)
    int FD_ISSET(int fd, fd_set *s)
    int select(int nfds, fd_set *r, fd_set *w, fd_set *x, timeval *timeout)

    enum:
        FD_SETSIZE


cdef extern from "<time.h>" nogil:
    ctypedef int clockid_t

    cdef struct timespec:
        long tv_sec
        long tv_nsec

    int clock_gettime(clockid_t clk, timespec *ts)

    enum:
        CLOCK_MONOTONIC


cdef extern from "<pthread.h>" nogil:
    int pthread_atfork(void (*prepare)() noexcept nogil,
                       void (*parent)() noexcept nogil,
                       void (*child)() noexcept nogil)


cdef extern from "<unistd.h>" nogil:
    int close(int fd)


cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)

    enum:
        MSG_NOSIGNAL
