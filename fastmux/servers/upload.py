"""``fastmux serve upload``: the tutorial's FTP-style upload, made safe.

Protocol (one connection may carry several uploads, one after another)::

    client: put|NAME|SIZE\\n        (or the tutorial's NAME|SIZE, see below)
    server: ready\\n                (or error CODE DETAIL\\n, then it closes)
    client: SIZE raw bytes
    server: ok SHA256HEX\\n         (or error CODE DETAIL\\n, then it closes)

The tutorial's client sends ``NAME|SIZE`` with no newline, waits for any
acknowledgement (its guard against "sticky packets"), streams the bytes and
never reads a status.  A header with no newline is therefore accepted once
it is complete (it has a ``|``) and followed by ``--header-quiet`` seconds of
silence; such a *legacy* upload gets no ``ok`` line (an unread ``ok`` would
be taken for the next acknowledgement by that client), and bytes after the
file are its next header.  A ``put|NAME|SIZE\\n`` client instead must wait
for the status: more than SIZE bytes is an ``overrun`` error.

Safety: the file is written to a temporary file in ``--dir`` and appears
under NAME only when complete (fsync, then ``link()``, which never replaces
an existing file, then fsync of the directory).  A client that vanishes,
stalls (``--idle-timeout``), sends too little or too much leaves nothing
behind.  NAME must be a plain file name: UTF-8, 1-255 bytes, no ``/``,
``\\``, NUL or control characters (C0, DEL, C1, bidirectional controls,
line separators), not ``.`` or ``..`` (surrounding blanks are dropped).
SIZE is decimal digits, at most ``--max-size``.  A full disk
(ENOSPC, EDQUOT, EFBIG) is reported as ``error no-space``.

Error codes: bad-header header-too-long bad-command bad-name bad-size
too-large exists busy no-space write-failed short overrun idle shutdown.

Disk writes: ``--write-mode inline`` hashes and writes each received chunk
on the loop thread (page-cache writes of one chunk take tens of
microseconds); ``--write-mode thread`` hands batches to the thread pool, one
batch in flight per upload, pausing reading above a high-water mark, so the
loop keeps receiving while a worker hashes and writes.  fsync and the
commit always run in the thread pool.  ``bench/upload_bench.py`` measures
both.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import re
import signal
import tempfile
from typing import Any, Callable, List, Optional, Set, Tuple

from .context import ServeContext
from .quiet import QUIET, QuietTimer

DEFAULT_PORT = 9999
TRANSPORT = "stream"

log = logging.getLogger("fastmux.servers")

HEADER_MAX = 1024  # longest header: "put|" + a 255-byte name + "|" + digits, with room to spare
MAX_SIZE_DIGITS = 19
TEMP_PREFIX = ".fastmux-upload-"
TEMP_SUFFIX = ".part"
BATCH = 1 << 20  # thread mode: bytes handed to the pool per job
HIGH_WATER = 16 << 20  # thread mode: pause reading above this many unwritten bytes
LOW_WATER = 4 << 20

try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Control characters -- C0, DEL and C1 (U+0080-U+009F: NEL, CSI...) -- plus the
# invisible characters that make a name display as something else or break a
# line: bidirectional marks, embeddings, overrides and isolates ("evil\u202etxt.exe"
# shows as "evilexe.txt") and the line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


class UploadError(Exception):
    """Reported to the client as ``error CODE DETAIL``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code} {detail}")
        self.code = code
        self.detail = detail

    def line(self) -> bytes:
        return f"error {self.code} {self.detail}\n".encode("utf-8", "replace")


def _os_error(exc: OSError, doing: str) -> UploadError:
    name = errno.errorcode.get(exc.errno or 0, "EIO")
    if exc.errno in _DISK_FULL:
        return UploadError("no-space", f"{doing}: {name} {os.strerror(exc.errno)}")
    return UploadError("write-failed", f"{doing}: {name} {exc.strerror or exc}")


def safe_name(raw: bytes) -> str:
    """NAME from a header, or ``UploadError('bad-name', ...)``."""
    raw = raw.strip()
    if not raw:
        raise UploadError("bad-name", "empty name")
    if len(raw) > 255:
        raise UploadError("bad-name", f"name is {len(raw)} bytes, the limit is 255")
    if b"\0" in raw:
        raise UploadError("bad-name", "NUL in name")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError("bad-name", "name is not UTF-8") from None
    if "/" in name or "\\" in name:
        raise UploadError("bad-name", "name must be a plain file name, without / or \\")
    if name in (".", ".."):
        raise UploadError("bad-name", f"{name!r} is not a file name")
    if _CONTROL.search(name):
        raise UploadError("bad-name", "control character in name")
    if name.startswith(TEMP_PREFIX):
        raise UploadError("bad-name", f"names starting with {TEMP_PREFIX} are reserved")
    return name


def parse_header(raw: bytes) -> Tuple[str, int]:
    """``put|NAME|SIZE`` or ``NAME|SIZE`` -> (NAME, SIZE); raises ``UploadError``."""
    fields = raw.split(b"|")
    if len(fields) == 3:
        cmd, name, size = fields
        if cmd.strip() != b"put":
            raise UploadError("bad-command", f"unknown command {cmd.strip()[:32]!r}, expected put")
    elif len(fields) == 2:
        name, size = fields
    else:
        raise UploadError("bad-header", "expected put|NAME|SIZE or NAME|SIZE")
    size = size.strip()
    if not size.isdigit():  # bytes.isdigit: ASCII 0-9 only, so no sign, no blanks
        raise UploadError("bad-size", f"SIZE must be decimal digits, got {size[:32]!r}")
    if len(size) > MAX_SIZE_DIGITS:
        raise UploadError("too-large", f"SIZE has {len(size)} digits")
    return safe_name(name), int(size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_batch(fd: int, sha: Any, chunks: List[bytes]) -> None:
    """Thread mode: runs in the pool, one batch at a time per upload."""
    for chunk in chunks:
        sha.update(chunk)  # releases the GIL for chunks over 2 KiB
    for i in range(0, len(chunks), IOV_MAX):  # a slow client's batch may hold thousands of tiny chunks
        group = chunks[i:i + IOV_MAX]
        written = os.writev(fd, group)
        if written < sum(map(len, group)):  # short writev (rare on regular files): write the rest
            _write_all(fd, memoryview(b"".join(group))[written:])


def _close_file(fd: int, fsync: bool) -> None:
    try:
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: str, final: str, directory: str, fsync: bool, mode: int) -> None:
    """Make the complete file visible under its name, never replacing one,
    with its final permissions (the temporary file was private)."""
    try:
        os.chmod(tmp, mode)
        os.link(tmp, final)  # EEXIST instead of overwriting, unlike rename()
    finally:
        os.unlink(tmp)
    if fsync:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class UploadServer:
    """Settings and bookkeeping shared by the upload connections of one process."""

    def __init__(self, directory: str, *, max_size: int, idle_timeout: float, header_quiet: float,
                 write_mode: str = "inline", fsync: bool = True, file_mode: Optional[int] = None) -> None:
        self.directory = os.path.abspath(directory)
        self.file_mode = default_file_mode() if file_mode is None else file_mode
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.header_quiet = header_quiet
        self.threaded = write_mode == "thread"
        self.fsync = fsync
        self.busy: Set[str] = set()  # names being uploaded by this process
        self.temps: Set[str] = set()  # temporary files not yet committed or removed

    def check_target(self, name: str, size: int) -> str:
        if size > self.max_size:
            raise UploadError("too-large", f"{size} bytes, the limit is {self.max_size}")
        final = os.path.join(self.directory, name)
        if os.path.lexists(final):
            raise UploadError("exists", f"{name} already exists")
        if name in self.busy:
            raise UploadError("busy", f"{name} is being uploaded")
        st = os.statvfs(self.directory)
        if size > st.f_bavail * st.f_frsize:
            raise UploadError("no-space", f"{size} bytes do not fit ({st.f_bavail * st.f_frsize} free)")
        return final

    def remove_stale_temps(self) -> None:
        """Remove temporary files left by server processes that no longer exist."""
        pattern = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-.*" + re.escape(TEMP_SUFFIX) + "$")
        for entry in os.scandir(self.directory):
            m = pattern.match(entry.name)
            if m and not _alive(int(m.group(1))):
                try:
                    os.unlink(entry.path)
                    log.info("upload: removed stale %s", entry.name)
                except OSError:
                    pass

    def close(self) -> None:
        for path in list(self.temps):
            _unlink_quietly(path)
        self.temps.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _Sink:
    """The temporary file of one upload and its running SHA-256."""

    def __init__(self, proto: "UploadProtocol", server: UploadServer) -> None:
        self.proto = proto
        self.server = server
        try:
            self.fd, self.path = tempfile.mkstemp(
                prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=server.directory)
        except OSError as exc:
            raise _os_error(exc, "create") from None
        server.temps.add(self.path)
        self.sha = hashlib.sha256()
        # thread mode
        self._pending: List[bytes] = []
        self._pending_bytes = 0
        self._busy = False  # a batch is in the pool: the fd is in use there
        self._paused = False
        self._on_written: Optional[Callable[[], None]] = None
        self._discarded = False

    def feed(self, data: bytes) -> None:
        if not self.server.threaded:
            self.sha.update(data)
            try:
                _write_all(self.fd, data)
            except OSError as exc:
                raise _os_error(exc, "write") from None
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if not self._busy:
            if self._pending_bytes >= BATCH:
                self._submit()
        elif self._pending_bytes >= HIGH_WATER and not self._paused:
            self._paused = True
            self.proto.transport.pause_reading()

    def _submit(self) -> None:
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        self._busy = True
        self.proto.ctx.offload("thread", _write_batch, self.fd, self.sha, chunks, done=self._written)

    def _written(self, fut: Any) -> None:
        self._busy = False
        if self._discarded:
            self._release()
            return
        exc = fut.exception()
        if exc is not None:
            err = _os_error(exc, "write") if isinstance(exc, OSError) else UploadError("write-failed", repr(exc))
            self.proto.fail(err)
            return
        if self._pending and (self._pending_bytes >= BATCH or self._on_written is not None):
            self._submit()
        if self._paused and self._pending_bytes < LOW_WATER and self.proto.transport is not None:
            self._paused = False
            self.proto.transport.resume_reading()
        if not self._busy and self._on_written is not None:
            on_written, self._on_written = self._on_written, None
            on_written()

    def when_written(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once every fed byte is in the file."""
        if not self._busy and not self._pending:
            callback()
            return
        self._on_written = callback
        if not self._busy:
            self._submit()

    def close_file(self, done: Callable[[Any], None]) -> None:
        fd, self.fd = self.fd, -1
        self.proto.ctx.offload("thread", _close_file, fd, self.server.fsync, done=done)

    def discard(self) -> None:
        """Forget the upload; its temporary file goes (once the pool is done with it)."""
        self._discarded = True
        self._pending = []
        if not self._busy:
            self._release()

    def _release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        _unlink_quietly(self.path)
        self.server.temps.discard(self.path)


HEADER, BODY, FINISHING, DONE = "header", "body", "finishing", "done"


class UploadProtocol:
    def __init__(self, server: UploadServer, ctx: ServeContext) -> None:
        self.server = server
        self.ctx = ctx
        self.transport: Any = None
        self.state = HEADER
        self._buf = b""
        self._legacy = False
        self._name = ""
        self._final = ""
        self._size = 0
        self._remaining = 0
        self._sink: Optional[_Sink] = None
        self._last = 0.0
        self._idle: Any = None
        self._quiet = QuietTimer(ctx.runtime, server.header_quiet, self._last_data, self._quiet_check)
        self._closing = False  # shut down: close after the current upload
        self._eof = False

    # ---- connection ----------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._last = self.ctx.runtime.time()
        if self.server.idle_timeout > 0:
            self._idle = self.ctx.runtime.call_later(self.server.idle_timeout, self._idle_check)
        self.ctx.conns.add(self)

    def data_received(self, data: bytes) -> None:
        self._last = self.ctx.runtime.time()
        if self.state is BODY:
            remaining = self._remaining
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                self._feed(data)
                return
            self._remaining = 0
            extra = data[remaining:]
            self._feed(data[:remaining] if extra else data)
            if self.state is not BODY:  # the write failed
                return
            if extra and not self._legacy:
                self.fail(UploadError("overrun", f"more than the {self._size} bytes announced"))
                return
            self._buf = extra
            self._finish()
        elif self.state is HEADER:
            self._buf += data
            self._header()
        elif self.state is FINISHING:
            self._buf += data  # checked when the file is written (_closed)

    def _feed(self, data: bytes) -> None:
        try:
            self._sink.feed(data)  # type: ignore[union-attr]
        except UploadError as err:
            self.fail(err)

    def eof_received(self) -> bool:
        self._eof = True
        if self.state is BODY:
            got = self._size - self._remaining
            self.fail(UploadError("short", f"connection ended after {got} of {self._size} bytes"))
            return True  # let the error line go out first; fail() closes
        # finishing: keep the transport open to send the status
        return self.state is FINISHING

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.ctx.conns.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._quiet.cancel()
        if self.state is BODY:
            got = self._size - self._remaining
            log.info("upload %s: client vanished after %d of %d bytes; discarded", self._name, got, self._size)
            self._discard()
        # FINISHING: every byte arrived; the commit goes on without the client.
        self.transport = None
        if self.state is not FINISHING:
            self.state = DONE

    # ---- header --------------------------------------------------------
    def _header(self) -> None:
        buf = self._buf
        end = buf.find(b"\n", 0, HEADER_MAX + 1)
        if end >= 0:
            self._buf = buf[end + 1:]
            self._begin(buf[:end].rstrip(b"\r"), legacy=False)
        elif len(buf) > HEADER_MAX:
            # Whether or not the newline came in the same read: the answer
            # must not depend on how the bytes were split into reads.
            self.fail(UploadError("header-too-long", f"no newline in the first {HEADER_MAX} bytes"))
        elif b"|" in buf:
            self._quiet.arm()

    def _last_data(self) -> float:
        return self._last

    def _quiet_check(self) -> None:
        if self.state is not HEADER or self.transport is None or not self._buf:
            return
        header, self._buf = self._buf, b""
        self._begin(header, legacy=True)

    def _begin(self, header: bytes, legacy: bool) -> None:
        self._quiet.cancel()
        self._legacy = legacy
        try:
            name, size = parse_header(header)
            self._name = name
            self._final = self.server.check_target(name, size)
            self._sink = _Sink(self, self.server)
        except UploadError as err:
            self.fail(err)
            return
        self._size, self._remaining = size, size
        self.server.busy.add(name)
        self.state = BODY
        self.transport.write(b"ready\n")
        log.debug("upload %s: %d bytes%s", name, size, " (legacy client)" if legacy else "")
        early, self._buf = self._buf, b""
        if size == 0:
            self._buf = early
            self._finish()
        elif early:
            self.data_received(early)

    # ---- finishing -----------------------------------------------------
    def _finish(self) -> None:
        self.state = FINISHING
        self._sink.when_written(self._written)  # type: ignore[union-attr]

    def _written(self) -> None:
        if self.state is FINISHING and self._sink is not None:
            self._sink.close_file(self._closed)

    def _closed(self, fut: Any) -> None:
        sink = self._sink
        if self.state is not FINISHING or sink is None:  # aborted meanwhile
            return
        exc = fut.exception()
        if exc is not None:
            self.fail(_os_error(exc, "fsync") if isinstance(exc, OSError) else UploadError("write-failed", repr(exc)))
            return
        if self._buf and not self._legacy:
            self.fail(UploadError("overrun", f"more than the {self._size} bytes announced"))
            return
        self.ctx.offload("thread", _commit, sink.path, self._final, self.server.directory,
                         self.server.fsync, self.server.file_mode, done=self._committed)

    def _committed(self, fut: Any) -> None:
        sink, self._sink = self._sink, None
        if sink is None:  # aborted meanwhile; _commit has consumed the temporary file
            return
        self.server.temps.discard(sink.path)
        self.server.busy.discard(self._name)
        exc = fut.exception()
        if isinstance(exc, FileExistsError):
            self.fail(UploadError("exists", f"{self._name} appeared during the upload; not replaced"))
            return
        if exc is not None:
            self.fail(_os_error(exc, "commit") if isinstance(exc, OSError) else UploadError("write-failed", repr(exc)))
            return
        digest = sink.sha.hexdigest()
        log.info("upload %s: %d bytes, sha256 %s", self._name, self._size, digest)
        self.state = HEADER
        self._name = ""
        if self.transport is None:
            self.state = DONE
            return
        if not self._legacy:
            self.transport.write(f"ok {digest}\n".encode())
        if self._closing or self._eof:
            self.transport.close()
            self.state = DONE
        elif self._buf:
            self._header()

    # ---- failure, timeouts, shutdown ------------------------------------
    def fail(self, err: UploadError) -> None:
        """Report ``err`` to the client, discard the upload, close."""
        log.info("upload %s: error %s %s", self._name or "-", err.code, err.detail)
        self._discard()
        self.state = DONE
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(err.line())
            self.transport.close()

    def _discard(self) -> None:
        if self._sink is not None:
            self._sink.discard()
            self._sink = None
            self.server.busy.discard(self._name)

    def _idle_check(self) -> None:
        self._idle = None
        if self.transport is None or self.state is DONE:
            return
        remaining = self._last + self.server.idle_timeout - self.ctx.runtime.time()
        if remaining > 0 or self.state is FINISHING:
            self._idle = self.ctx.runtime.call_later(max(remaining, 0.1), self._idle_check)
            return
        self.fail(UploadError("idle", f"nothing received for {self.server.idle_timeout:g}s"))

    def shutdown(self) -> None:
        self._closing = True
        if self.state is HEADER and self.transport is not None:
            if self._buf:
                self.fail(UploadError("shutdown", "the server is shutting down"))
            else:
                self.transport.close()
                self.state = DONE

    def abort(self) -> None:
        self._discard()
        self.state = DONE
        if self.transport is not None:
            self.transport.abort()


def _size_arg(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(i?b)?", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 4G)")
    return int(m.group(1)) * units[m.group(2)]


def default_file_mode() -> int:
    """What a new file gets from open(): 0666 less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it: set it back at once
    os.umask(umask)
    return 0o666 & ~umask


def _mode_arg(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an octal mode such as 644, got {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"expected an octal mode 0-777, got {text!r}")
    return mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=".", help="where uploaded files go (default: the current directory)")
    parser.add_argument("--mode", type=_mode_arg, default=None, metavar="OCTAL",
                        help="permissions of stored files, e.g. 600 (default: 666 less the umask, as "
                             "any new file gets)")
    parser.add_argument("--max-size", type=_size_arg, default=_size_arg("8G"), metavar="SIZE",
                        help="largest accepted upload, e.g. 500M, 4G (default: 8G)")
    parser.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="drop a client silent this long mid-upload; 0 = never (default: %(default)s)")
    parser.add_argument("--header-quiet", type=float, default=QUIET, metavar="SECONDS",
                        help="a header without newline (the tutorial's client) counts as complete after "
                             "this much silence (default: %(default)s)")
    parser.add_argument("--write-mode", choices=("inline", "thread"), default="inline",
                        help="write received chunks on the loop, or in batches in the thread pool "
                             "(default: %(default)s; see bench/upload_bench.py)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false",
                        help="skip fsync before commit (faster, not crash-safe; for benchmarks)")


def check_options(args: argparse.Namespace) -> None:
    if not os.path.isdir(args.dir):
        raise ValueError(f"--dir {args.dir}: not a directory")
    if not os.access(args.dir, os.W_OK | os.X_OK):
        raise ValueError(f"--dir {args.dir}: not writable")


def make_server(args: argparse.Namespace) -> UploadServer:
    check_options(args)
    return UploadServer(args.dir, max_size=args.max_size, idle_timeout=args.idle_timeout,
                        header_quiet=args.header_quiet, write_mode=args.write_mode, fsync=args.fsync,
                        file_mode=args.mode)


def make_protocol_factory(args: argparse.Namespace, reactor: Any, ctx: ServeContext) -> Callable[[], Any]:
    server = make_server(args)
    # A file over RLIMIT_FSIZE must fail the write with EFBIG (reported as
    # no-space), not kill the whole server with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    server.remove_stale_temps()
    ctx.at_close(server.close)
    return lambda: UploadProtocol(server, ctx)
