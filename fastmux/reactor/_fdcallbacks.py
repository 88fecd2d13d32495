"""The callbacks of ``add_reader``/``add_writer``, by fd, and what becomes of
them when their fd is closed behind the loop's back.

The loop owns the fds of its transports, listeners and connectors; these
are the others: user code holds the fd, and may close it without
``remove_reader``.  So each entry remembers the file's identity
(st_dev, st_ino) when it is added:

* adding a callback for a number whose file changed (closed and reused)
  drops the stale entry, reports it, and registers the new file;
* a callback that raises is followed by an ``fstat``: EBADF removes the
  entry instead of reporting the same error every iteration;
* when ``FdWatch`` finds an fd stale or bad (see ``_fdwatch``), the loop
  hands the key here first (:meth:`FdCallbacks.lost`).

These callbacks are level-triggered in every mode: the loop cannot know
whether user code drained the fd.  Compiled into ``_fdcallbacks_c``
(typed by ``src/fastmux/reactor/_fdcallbacks_c.pxd``).
"""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from . import _cython_shim as cython

if cython.compiled:  # the compiled twin's siblings
    from ._fdwatch_c import EVENT_READ, EVENT_WRITE, fileno_of
else:
    from ._fdwatch import EVENT_READ, EVENT_WRITE, fileno_of
if TYPE_CHECKING:
    from .handles import Handle
    from ._fdwatch import FdWatch
    from .loop import Reactor

__all__ = ["FdCallbacks"]

_REUSED = "was closed and reused without remove_reader/remove_writer; its old callbacks were dropped"


def _file_ident(fd: int) -> Tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


class _FdEntry:
    """The reader and writer callbacks of one fd: the selector key's data for it."""

    __slots__ = ("table", "fd", "fileobj", "ident", "reader", "writer", "_io_requeued")

    def __init__(self, table: FdCallbacks, fd: int, fileobj: Any, ident: Tuple[int, int]) -> None:
        self.table = table
        self.fd = fd
        self.fileobj = fileobj
        self.ident = ident
        self.reader: Optional[Handle] = None
        self.writer: Optional[Handle] = None
        self._io_requeued = False

    def events(self) -> int:
        return (EVENT_READ if self.reader is not None else 0) | (EVENT_WRITE if self.writer is not None else 0)

    def _on_io(self, mask: int) -> None:
        if mask & EVENT_READ:
            h = self.reader
            if h is not None and not h._cancelled:
                self._run(h)
        if mask & EVENT_WRITE:
            h = self.writer  # re-read: the reader may have removed it
            if h is not None and not h._cancelled:
                self._run(h)

    def _run(self, h: Any) -> None:
        try:
            ctx = h._context
            if ctx is None:
                h._callback(*h._args)
            else:
                ctx.run(h._callback, *h._args)
        except BaseException as exc:
            if self.table._callback_failed(self, h, exc):
                raise

    def _io_retry(self) -> None:  # only after an interrupted dispatch; level-triggered anyway
        self._io_requeued = False

    def drop(self) -> None:
        for h in (self.reader, self.writer):
            if h is not None:
                h.cancel()
        self.reader = self.writer = None

    def __repr__(self) -> str:
        return f"<fd {self.fd} reader={self.reader!r} writer={self.writer!r}>"


class FdCallbacks:
    """A reactor's ``add_reader``/``add_writer`` callbacks, one entry per fd."""

    __slots__ = ("_loop", "_watch", "_entries")

    def __init__(self, loop: Reactor, watch: FdWatch) -> None:
        self._loop = loop
        self._watch = watch
        self._entries: Dict[int, _FdEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, fileobj: Any, event: int, handle: Any) -> None:
        """Run ``handle`` (a :class:`Handle` or an ``asyncio.Handle``) while ``fileobj``
        is ready for ``event``, replacing the previous one (which is cancelled)."""
        if not callable(handle._callback):
            raise TypeError(f"callback must be callable, not {handle._callback!r}")
        fd = fileno_of(fileobj)
        owner = self._loop._owners.get(fd)
        if owner is not None:
            raise RuntimeError(f"fd {fd} is used by {owner!r}; it cannot also take add_reader/add_writer")
        ident = _file_ident(fd)  # raises for a closed fd
        entry = self._entries.get(fd)
        stale = entry is not None and entry.ident != ident
        if stale:
            self._drop(entry, _REUSED)
            entry = None
        if entry is None:
            entry = _FdEntry(self, fd, fileobj, ident)
            if event == EVENT_READ:
                entry.reader = handle
            else:
                entry.writer = handle
            self._watch.register(fd, event, entry)
            self._entries[fd] = entry
            if stale:
                self._watch.shed_stale()  # the old file may live on (dup): see FdWatch.shed_stale
            return
        old = entry.reader if event == EVENT_READ else entry.writer
        if event == EVENT_READ:
            entry.reader = handle
        else:
            entry.writer = handle
        if old is None:
            try:
                self._watch.modify(fd, entry.events(), entry)
            except BaseException:
                if event == EVENT_READ:
                    entry.reader = None
                else:
                    entry.writer = None
                raise
        else:
            old.cancel()

    def remove(self, fileobj: Any, event: int) -> bool:
        """Stop calling the ``event`` callback of ``fileobj``; False if there was none."""
        entry = self._find(fileobj)
        if entry is None:
            return False
        h = entry.reader if event == EVENT_READ else entry.writer
        if h is None:
            return False
        h.cancel()
        if event == EVENT_READ:
            entry.reader = None
        else:
            entry.writer = None
        events = entry.events()
        if events:
            try:
                self._watch.modify(entry.fd, events, entry)
            except OSError:
                self._drop(entry, None)  # the fd is gone: the other callback cannot work either
        else:
            self._drop(entry, None)
        return True

    def lost(self, key: Any, exc: Optional[OSError]) -> bool:
        """``FdWatch`` found ``key``'s fd closed behind our back (``exc``: the error it met;
        None: the number now names another file) and dropped its registration.  True
        when the key was one of ours, whose callbacks are then removed and reported."""
        entry = key.data
        if not isinstance(entry, _FdEntry):
            return False
        if self._entries.get(entry.fd) is entry:
            del self._entries[entry.fd]
        entry.drop()
        if exc is None:
            self._loop.call_exception_handler({"message": f"fd {entry.fd} {_REUSED}", "fd": entry.fd})
        else:
            self._loop.call_exception_handler({"message": f"fd {entry.fd} was closed while registered; "
                                                          "its callbacks were removed", "exception": exc,
                                               "fd": entry.fd})
        return True

    def clear(self) -> None:
        """Cancel every callback (the loop is closing: the selector goes with it)."""
        for entry in self._entries.values():
            entry.drop()
        self._entries.clear()

    def _find(self, fileobj: Any) -> Optional[_FdEntry]:
        try:
            return self._entries.get(fileno_of(fileobj))
        except ValueError:
            # e.g. a socket object already closed (fileno() == -1): look it up by identity
            for entry in self._entries.values():
                if entry.fileobj is fileobj:
                    return entry
            return None

    def _drop(self, entry: _FdEntry, why: Optional[str]) -> None:
        entry.drop()
        if self._entries.get(entry.fd) is entry:
            del self._entries[entry.fd]
        key = self._watch.get_key(entry.fd)
        if key is not None and key.data is entry:
            self._watch.unregister(entry.fd)
        if why is not None:
            self._loop.call_exception_handler({"message": f"fd {entry.fd} {why}", "fd": entry.fd})

    def _callback_failed(self, entry: _FdEntry, h: Any, exc: BaseException) -> bool:
        if self._loop._callback_failed(h, exc):
            return True
        if self._entries.get(entry.fd) is entry:
            try:
                os.fstat(entry.fd)
            except OSError as err:
                if err.errno == errno.EBADF:
                    self._drop(entry, "was closed while registered (EBADF); its callbacks were removed")
        return False
