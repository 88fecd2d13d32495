# cython: language_level=3, embedsignature=True
"""Compiled selectors: the stdlib ``selectors`` API with the per-event work in C.

``select()`` turns the kernel's ready list into ``[(SelectorKey, events)]``
without a Python-level loop: the fd -> key lookup is a list index, the event
translation is integer arithmetic, and keys are built with ``tuple.__new__``
instead of the namedtuple's Python-level constructor.

Behaviour follows the stdlib's ``selectors`` (CPython 3.11) case by case:
the same exceptions with the same messages for invalid events, double
registration, unknown file objects, and epoll's refusal of regular files.
Deliberate differences, each documented in the README:
* a closed selector raises ``ValueError`` on register/modify/select for every
  backend (the stdlib: ``ValueError`` or ``KeyError`` for epoll, nothing for
  poll and select);
* a refused ``modify`` leaves the registration as it was;
* ``SelectSelector.register`` rejects fds >= FD_SETSIZE at once, not at the
  next ``select()``;
* epoll registrations accept extra ``flags`` (see ``EpollSelector``);
* ``EpollSelector`` is fork-safe: see ``_check_fork``.

Fork policy.  After fork() the child shares the parent's epoll instance:
an unregister or modify in the child would silently change what the parent
is told.  So the first use of an ``EpollSelector`` in a forked child swaps
in a fresh epoll instance holding the same registrations (the inherited
descriptor is closed in the child only, which leaves the parent's instance
untouched).  The check is one integer comparison per call against a
generation counter bumped by a ``pthread_atfork`` child handler.
"""
# PyMem_* here are debug.h's counting wrappers in FASTMUX_DEBUG builds and the
# CPython functions themselves in release builds.
from fastmux.includes.debug cimport mem_free as PyMem_Free, mem_realloc as PyMem_Realloc
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject, PyTypeObject
from cpython.object cimport PyObject_AsFileDescriptor
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memset

import selectors as _stdlib_selectors
from collections.abc import Mapping

from fastmux._pollers_c cimport Epoll, Poll, Poller, Select
from fastmux.includes cimport system as c
from fastmux.includes.debug cimport FASTMUX_DEBUG, counters, counters_dict
from fastmux.includes.system cimport epoll_event

SelectorKey = _stdlib_selectors.SelectorKey
BaseSelector = _stdlib_selectors.BaseSelector
EVENT_READ = _stdlib_selectors.EVENT_READ
EVENT_WRITE = _stdlib_selectors.EVENT_WRITE

EPOLLET = <uint32_t>c.EPOLLET  # 1u << 31: an int enum would make it negative
EPOLLONESHOT = c.EPOLLONESHOT
EPOLLEXCLUSIVE = c.EPOLLEXCLUSIVE
EPOLLRDHUP = c.EPOLLRDHUP



def _debug_counters():
    """Leak counters of a debug build (FASTMUX_DEBUG=1): the selectors' C
    buffers allocated, resized and freed and selector objects created and
    freed, with the live balances (their pollers are counted by
    ``fastmux._pollers_c._debug_counters()``).  ``{}`` in release builds,
    where the counting is compiled out."""
    return counters_dict()


cdef int C_READ = 1   # EVENT_READ
cdef int C_WRITE = 2  # EVENT_WRITE
cdef uint32_t EPOLL_FLAGS = c.EPOLLET | c.EPOLLONESHOT | c.EPOLLEXCLUSIVE | c.EPOLLRDHUP

cdef extern from "Python.h":
    # A tuple subtype's allocator (a namedtuple's, here), as tuple.__new__ uses.
    PyObject *alloc_instance "PyType_GenericAlloc"(PyTypeObject *tp, Py_ssize_t nitems) except NULL
    void tuple_set "PyTuple_SET_ITEM"(PyObject *t, Py_ssize_t i, object o)


cdef PyTypeObject *KEY_TYPE = <PyTypeObject *>SelectorKey


cdef inline object new_key(fileobj, int fd, events, data):
    # What SelectorKey(...) builds, minus the namedtuple's Python-level frame.
    cdef PyObject *key = alloc_instance(KEY_TYPE, 4)
    Py_INCREF(fileobj)
    tuple_set(key, 0, fileobj)
    cdef object value = fd
    Py_INCREF(value)
    tuple_set(key, 1, value)
    Py_INCREF(events)
    tuple_set(key, 2, events)
    Py_INCREF(data)
    tuple_set(key, 3, data)
    result = <object>key  # a new reference: drop the allocator's own
    Py_DECREF(result)
    return result
cdef unsigned long fork_generation = 0


cdef void _child_after_fork() noexcept nogil:
    global fork_generation
    fork_generation += 1


c.pthread_atfork(NULL, NULL, _child_after_fork)


cdef int _fileobj_to_fd(object fileobj) except -1:
    """The stdlib's ``selectors._fileobj_to_fd``, same errors and messages."""
    cdef object fd
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


cdef inline uint32_t poller_events(int events) noexcept:
    cdef uint32_t ev = 0
    if events & C_READ:
        ev |= c.POLLIN
    if events & C_WRITE:
        ev |= c.POLLOUT
    return ev


cdef int check_events(object events) except -1:
    """The stdlib's validation: a non-empty subset of EVENT_READ|EVENT_WRITE."""
    cdef long v
    if type(events) is int:
        try:
            v = events
        except OverflowError:
            v = 0
        if 0 < v <= 3:
            return v
    elif events and not (events & ~(EVENT_READ | EVENT_WRITE)):
        return int(events)
    raise ValueError(f"Invalid events: {events!r}")


class _SelectorMapping(Mapping):
    """Read-only live view of a selector's registrations: fileobj -> key.
    Iterates over the registered fds, in fd order."""

    __slots__ = ("_selector",)

    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return self._selector._count()

    def __getitem__(self, fileobj):
        return self._selector._lookup_key(fileobj)

    def __iter__(self):
        return iter(self._selector._fds())


cdef struct Slot:
    uint32_t flags            # extra epoll flags (EpollSelector only)
    uint8_t events            # registered EVENT_* mask
    uint8_t pair_events       # the events of the fd's cached pair in _pairs


cdef inline int _ready_events(Slot *slots, Py_ssize_t nslots, epoll_event *ready) noexcept:
    """A ready event as the EVENT_* mask its fd is registered for (0 if none of
    those), or -1 if the fd was unregistered while the wait ran."""
    cdef int fd = ready.data.fd
    cdef uint32_t ev = ready.events
    cdef int events = 0
    if fd >= nslots or slots[fd].events == 0:
        return -1
    if ev & ~c.POLLIN:
        events = C_WRITE
    if ev & ~c.POLLOUT:
        events |= C_READ
    return events & slots[fd].events


cdef class _Selector:
    """Shared by the three selectors; the subclass picks the poller."""
    cdef Poller _poller
    cdef Py_ssize_t _nkeys    # registrations (get_map()'s len)
    cdef list _by_fd          # fd -> SelectorKey or None: the hot-path lookup
    # fd -> None or the (key, events) pair select() last handed out for it
    # (its events in Slot.pair_events): an fd that is ready the same way again
    # (nearly always) gets the same immutable pair instead of a new tuple per
    # event.  One tuple per fd, not one per mask: at 10 000 connections that
    # is ~1 MiB less, and one object less to touch per event.  Dropped
    # whenever the fd's key or events change (_store).
    cdef list _pairs
    # fd -> the registration's data (None where none): what _select_data hands
    # out, so that a ready fd's key and pair are not touched at all
    cdef list _data
    cdef Slot *_slots         # fd -> events and flags, as long as _by_fd
    cdef object _map
    cdef bint _closed
    cdef unsigned long _generation
    cdef uint32_t _allowed_flags
    # Instances take attributes, as the stdlib's do: tests replace
    # s.register or s.unregister with a mock, and code tags a selector with
    # its own fields.  The cost: a method call looks in this (empty) dict
    # before the type, about 30 instructions per select() on 3.11.
    cdef dict __dict__

    def __cinit__(self):
        # Until __init__ has made the poller, the selector acts closed: a
        # subclass that skips __init__ (or cls.__new__(cls)) gets ValueError,
        # not a NULL poller or a None list dereferenced in C.
        self._by_fd = []
        self._pairs = []
        self._data = []
        self._closed = True
        if FASTMUX_DEBUG:
            counters.objects_created += 1

    def __init__(self):
        self._poller = self._new_poller()
        self._nkeys = 0
        self._by_fd = []
        self._pairs = []
        self._data = []
        self._map = _SelectorMapping(self)
        self._closed = False
        self._generation = fork_generation

    def __dealloc__(self):
        PyMem_Free(self._slots)
        if FASTMUX_DEBUG:
            counters.objects_freed += 1

    def _new_poller(self):
        raise TypeError("use EpollSelector, PollSelector or SelectSelector")

    # -- fd bookkeeping -------------------------------------------------------

    def _fileobj_lookup(self, fileobj):
        """fd of ``fileobj``; falls back to a search of the registrations so a
        closed file object that is still registered can be unregistered."""
        return self._fd_of(fileobj)

    cdef int _fd_of(self, object fileobj) except -1:
        cdef int fd
        try:
            # The C API's lookup is the fast path; any failure is redone the
            # stdlib's way below, for the stdlib's exceptions and messages.
            return PyObject_AsFileDescriptor(fileobj)
        except Exception:
            pass
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._by_fd:
                if key is not None and key.fileobj is fileobj:
                    return key.fd
            raise

    cdef inline object _key_at(self, int fd):
        if fd < PyList_GET_SIZE(self._by_fd):
            return <object>PyList_GET_ITEM(self._by_fd, fd)
        return None

    cdef int _store(self, int fd, object key, int events, uint32_t flags) except -1:
        cdef Py_ssize_t n = PyList_GET_SIZE(self._by_fd)
        cdef Py_ssize_t cap
        cdef Slot *slots
        if fd >= n:
            cap = max(fd + 1, 2 * n, 64)
            slots = <Slot *>PyMem_Realloc(self._slots, cap * sizeof(Slot))
            if slots == NULL:
                raise MemoryError()
            memset(slots + n, 0, (cap - n) * sizeof(Slot))
            self._slots = slots
            self._by_fd.extend([None] * (cap - n))
            self._pairs.extend([None] * (cap - n))
            self._data.extend([None] * (cap - n))
        old = self._by_fd[fd]
        self._nkeys += (key is not None) - (old is not None)
        self._by_fd[fd] = key
        self._pairs[fd] = None
        self._data[fd] = None if key is None else (<tuple>key)[3]
        self._slots[fd].events = events
        self._slots[fd].flags = flags
        return 0

    def _count(self):
        return self._nkeys

    def _fds(self):
        return [fd for fd, key in enumerate(self._by_fd) if key is not None]

    def _lookup_key(self, fileobj):
        key = self._key_at(self._fd_of(fileobj))
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return key

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ValueError(f"I/O operation on closed {type(self).__name__}")
        if self._generation != fork_generation:
            self._after_fork()
        return 0

    cdef int _after_fork(self) except -1:
        self._generation = fork_generation
        return 0

    cdef uint32_t _check_flags(self, object flags) except? 0xFFFFFFFF:
        cdef uint32_t f = flags
        if f & ~self._allowed_flags:
            raise ValueError(f"flags {flags:#x} not supported by {type(self).__name__}")
        return f

    # -- the stdlib API -------------------------------------------------------

    def register(self, fileobj, events, data=None, *, flags=0):
        """Register ``fileobj`` for ``events`` (EVENT_READ | EVENT_WRITE) with
        optional ``data``; returns its ``SelectorKey``."""
        cdef int ev = check_events(events)
        cdef uint32_t f = self._check_flags(flags) if flags else 0
        cdef int fd = self._fd_of(fileobj)
        if self._key_at(fd) is not None:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        self._check_open()
        self._poller._add(fd, poller_events(ev) | f)
        key = new_key(fileobj, fd, events, data)
        self._store(fd, key, ev, f)
        return key

    def unregister(self, fileobj):
        """Unregister ``fileobj``; returns its ``SelectorKey``.  An fd closed
        since it was registered is unregistered without an error."""
        cdef int fd = self._fd_of(fileobj)
        key = self._key_at(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        self._store(fd, None, 0, 0)
        if not self._closed:
            if self._generation != fork_generation:
                self._after_fork()
            try:
                self._poller._del(fd)
            except OSError:
                pass  # the fd was closed since it was registered
        return key

    def modify(self, fileobj, events, data=None, *, flags=None):
        """Change the events and data of a registered ``fileobj``.
        ``flags=None`` keeps the epoll flags; a one-shot registration is
        re-armed by every modify, even with unchanged events.  It changes the
        registration in place, never through ``self.unregister`` and
        ``self.register`` (as the stdlib's epoll and poll selectors; its
        select selector goes through them when the events change)."""
        cdef int ev
        cdef uint32_t f
        self._check_open()  # a closed selector: ValueError, not KeyError
        cdef int fd = self._fd_of(fileobj)
        key = self._key_at(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        old_events = (<tuple>key)[2]
        f = self._slots[fd].flags if flags is None else self._check_flags(flags)
        changed = False
        if events != old_events or f != self._slots[fd].flags or f & c.EPOLLONESHOT:
            ev = check_events(events)
            self._check_open()
            # A modify the kernel refuses changes nothing, here or there.
            self._poller._mod(fd, poller_events(ev) | f)
            self._slots[fd].events = ev
            self._slots[fd].flags = f
            changed = True
        old_data = (<tuple>key)[3]
        if data is not old_data and data != old_data:
            changed = True
        if changed:
            key = new_key((<tuple>key)[0], fd, events, data)
            self._store(fd, key, self._slots[fd].events, f)
        return key

    def select(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever; <= 0: poll) and
        return ``[(key, events)]`` for the ready file objects."""
        cdef int n = self._wait(timeout)
        return self._ready_pairs(n) if n else []

    def _select_data(self, timeout=None):
        """``select()`` for the reactor: ``[data, events, data, events, ...]``,
        flat, each ready fd's registration data read from a list by fd.  The
        key and the cached pair are not touched: with thousands of
        connections those are two cache misses (and two reference-count
        writes) per event."""
        cdef int n = self._wait(timeout)
        return self._ready_data(n) if n else []

    cdef int _wait(self, timeout) except -1:
        """The poller's wait: how many events it left in its ready buffer."""
        cdef double t
        if timeout is None:
            t = -1.0
        else:
            t = timeout
            if t < 0:
                t = 0
        self._check_open()
        # Room for every key, as the stdlib sizes it: not the poller's own
        # count, which drifts up when fds are closed before unregister().
        return self._poller._wait(t, self._nkeys if self._nkeys > 0 else 1)

    cdef list _ready_pairs(self, int n):
        """select()'s list for the wait's n events: a cached (key, events) pair per fd."""
        cdef int i, fd, events
        cdef Slot *slots
        result = []
        # by_fd and pairs_by_fd are equally long (_store extends both)
        by_fd = self._by_fd
        pairs_by_fd = self._pairs
        for i in range(n):
            # Re-read each time: result.append() may run arbitrary code (a GC
            # pass and its finalizers, or another thread meanwhile) that
            # closes this selector or grows its buffers, freeing the ones a
            # pointer cached before the loop would still read.
            slots = self._slots
            if slots == NULL:
                break  # closed meanwhile
            fd = self._poller._ready[i].data.fd
            events = _ready_events(slots, PyList_GET_SIZE(by_fd), &self._poller._ready[i])
            if events < 0:
                continue
            key = <object>PyList_GET_ITEM(by_fd, fd)
            if events == 0:
                result.append((key, 0))
                continue
            pair = <object>PyList_GET_ITEM(pairs_by_fd, fd)
            if pair is None or slots[fd].pair_events != events:
                pair = (key, events)
                pairs_by_fd[fd] = pair  # frees at most an old (key, int) tuple: runs no code
                slots[fd].pair_events = events
            result.append(pair)
        return result

    cdef list _ready_data(self, int n):
        """_select_data's list for the wait's n events: made at its full size and
        filled in place (appending one item at a time regrows and copies it, a
        cache miss per 64 bytes with thousands of events), cut to what it holds.
        Nothing in the loop allocates or runs Python code (its ints are CPython's
        cached small ones), so no GC pass or other thread sees it half filled."""
        cdef int i, events
        cdef Py_ssize_t k = 0
        cdef Slot *slots = self._slots
        cdef epoll_event *ready = self._poller._ready
        cdef list data_by_fd = self._data  # as long as _by_fd (_store extends both)
        cdef Py_ssize_t nslots = PyList_GET_SIZE(data_by_fd)
        cdef list result = PyList_New(2 * n)
        cdef object item
        for i in range(n):
            events = _ready_events(slots, nslots, &ready[i])
            if events < 0:
                continue
            item = <object>PyList_GET_ITEM(data_by_fd, ready[i].data.fd)
            Py_INCREF(item)
            PyList_SET_ITEM(result, k, item)
            item = events
            Py_INCREF(item)
            PyList_SET_ITEM(result, k + 1, item)
            k += 2
        if k < 2 * n:
            del result[k:]
        return result

    def close(self):
        """Close the selector and drop every registration."""
        if not self._closed:
            self._closed = True
            self._nkeys = 0
            self._by_fd = []
            self._pairs = []
            self._data = []
            PyMem_Free(self._slots)
            self._slots = NULL
            self._map = None
            self._poller.close()

    def get_key(self, fileobj):
        """The ``SelectorKey`` of a registered ``fileobj`` (KeyError if none)."""
        if self._map is None:
            raise RuntimeError("Selector is closed")
        return self._lookup_key(fileobj)

    def get_map(self):
        """A read-only live mapping of file objects to keys (None once closed)."""
        return self._map

    def _key_from_fd(self, fd):
        """The key registered for ``fd``, or None."""
        return self._key_at(fd) if fd >= 0 else None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


cdef class EpollSelector(_Selector):
    """Epoll-based selector.  ``register``/``modify`` accept ``flags``, any of
    ``EPOLLET`` (edge-triggered), ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE``
    (add only) and ``EPOLLRDHUP``, or'ed into the registration."""

    def __init__(self):
        self._allowed_flags = EPOLL_FLAGS
        _Selector.__init__(self)

    def _new_poller(self):
        return Epoll()

    def fileno(self):
        """The epoll instance's file descriptor."""
        return self._poller.fileno()

    cdef int _after_fork(self) except -1:
        # Registrations of fds the child has closed cannot be copied; they
        # are dropped from the new instance but stay in the key map, as they
        # would after a close() without unregister().
        old = self._poller
        self._poller = Epoll()
        self._generation = fork_generation
        old.close()
        for fd in self._fds():
            try:
                self._poller._add(fd, poller_events(self._slots[fd].events) | self._slots[fd].flags)
            except OSError:
                pass
        return 0


cdef class PollSelector(_Selector):
    """Poll-based selector."""

    def _new_poller(self):
        return Poll()


cdef class SelectSelector(_Selector):
    """Select-based selector (fds below FD_SETSIZE only)."""

    def _new_poller(self):
        return Select()


# BaseSelector.register is the abstract selector method; ABCMeta's
# virtual-subclass register is reached through the metaclass.
type(BaseSelector).register(BaseSelector, EpollSelector)
type(BaseSelector).register(BaseSelector, PollSelector)
type(BaseSelector).register(BaseSelector, SelectSelector)
DefaultSelector = EpollSelector
