"""Static files from one directory: a fast replacement for ``python -m http.server``.

Containment (nothing outside the root is ever served):

1. The request path is percent-decoded *before* it is split, so ``%2e%2e``
   and ``%2f`` are seen for what they are; any ``..`` segment, any NUL, and
   anything that is not an absolute path is a 404.
2. The kernel is asked where a file really is, on an *open descriptor*
   (``/proc/self/fd/N``); if that is not under the root's real path the
   answer is 404.  Symlinks are followed (``O_NOFOLLOW`` is not used):
   those that stay inside the root are fine.  Checking the descriptor, not
   the path, leaves no time-of-check/time-of-use gap for a symlink swapped
   in between.  Without ``/proc`` the fallback is ``os.path.realpath``,
   which has that gap.
3. The verdict is remembered per file identity (device, inode): the next
   request ``stat``s the path and, when it names the same file, skips the
   open and the ``/proc`` lookup.  A path that now names another file (a
   swapped symlink) has another identity and is checked afresh; the only
   way to reach an identity already approved is to reach that very file,
   which was inside the root when approved.
4. Only regular files and directories are served; FIFOs, devices and
   sockets are 404 (opens are ``O_NONBLOCK`` so a FIFO cannot stall the
   server).

Small files (``inline_max`` bytes or less) go out in one ``write`` with the
head: one syscall instead of two, cheaper than ``sendfile`` at that size.
Their bytes are kept (``cache_max`` bytes in all) and reused while a fresh
``stat`` shows the same size, mtime and ctime (any write changes ctime; files
changed in the last two seconds are not cached, as timestamps are coarse),
so a popular small file costs one ``stat`` per request.  Larger files go out
with ``transport.sendfile`` (``os.sendfile``, zero copy) from a descriptor
opened for that response.

Complete responses are kept for the rest of the server's :class:`Clock`
second, because even that one ``stat`` and the head it feeds cost several
times what replaying bytes does.  A plain ``GET`` or ``HEAD`` (no
``If-None-Match``, ``If-Modified-Since``, ``Range`` or ``If-Range``)
answered 200 with bytes the small-file cache holds (or a HEAD) is kept,
head and body, by request target and variant (keep-alive or close, GET or
HEAD); the next plain request for that target costs a dictionary lookup
and a look at the length of each header name.  Every response carries the
clock's ``Date`` line, which must be current, so the cache is tied to that
very line (the object, not its text) and dropped whole when the clock turns
its second.  Hence the bound: after a file is changed, replaced or deleted
(or a symlink swapped), the old answer may still be given until the clock
next turns -- at most one second, plus however late the event loop runs
the server's once-a-second tick.  (A clock nobody refreshes, as in unit
tests, never turns.)  Only answers already verified and served are
replayed, so rules 1-4 hold for the cache too.  It holds at most
``cache_max`` bytes and 4096 targets.  404s, redirects, listings, 304s,
206s and 416s are never kept: conditional and range requests always get a
fresh ``stat``.
"""
from __future__ import annotations

import errno
import html
import mimetypes
import os
import stat
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import quote, unquote_to_bytes

from .._impl import load_twin
from .request import Request
from .response import HTML_UTF8, Clock, http_date

# The twins the protocol uses (compiled where built).
split_target = load_twin("fastmux.http._request_c", "fastmux.http.request").split_target
_response = load_twin("fastmux.http._response_c", "fastmux.http.response")
build_head, simple_response = _response.build_head, _response.simple_response

__all__ = ["FileSend", "StaticFiles", "content_type_for"]

_PROC_FD = "/proc/self/fd/%d"
_VERIFIED_MAX = 65536
_RACY_S = 2.0
_PATHS_MAX = 4096
_MISSING = object()
# The request headers that may change a file's answer, and their lengths
# (most names are told apart by length alone, without lower-casing them).
_CONDITIONAL_NAMES = frozenset((b"range", b"if-range", b"if-none-match", b"if-modified-since"))
_CONDITIONAL_LENGTHS = frozenset(map(len, _CONDITIONAL_NAMES))
_HAVE_PROC = os.path.isdir("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
# open() failing for want of a descriptor says nothing about the file: 503, not 404.
_NO_FDS = frozenset(getattr(errno, n) for n in ("EMFILE", "ENFILE") if hasattr(errno, n))


class _OutOfDescriptors(Exception):
    """Raised by ``_open``/``_listing`` when the process has no descriptor to spare."""

# Deterministic types for the common web files (the system's mime.types,
# which ``mimetypes`` reads, differs between machines); the rest from
# ``mimetypes``.  Compressed files are served as themselves, as http.server
# does, never as their content type plus a Content-Encoding.
_TYPES: Dict[str, str] = {
    ".html": "text/html", ".htm": "text/html", ".txt": "text/plain", ".css": "text/css",
    ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
    ".xml": "application/xml", ".svg": "image/svg+xml", ".png": "image/png",
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".ico": "image/x-icon", ".wasm": "application/wasm", ".pdf": "application/pdf",
    ".md": "text/markdown", ".csv": "text/csv", ".woff": "font/woff", ".woff2": "font/woff2",
    ".gz": "application/gzip", ".bz2": "application/x-bzip2", ".xz": "application/x-xz",
    ".zip": "application/zip", ".tar": "application/x-tar", ".mp4": "video/mp4",
}
_DEFAULT_TYPE = "application/octet-stream"
_type_cache: Dict[bytes, bytes] = {}


def content_type_for(name: Union[str, bytes]) -> bytes:
    """The Content-Type for a file name; text types say ``charset=utf-8``."""
    if isinstance(name, str):
        name = os.fsencode(name)
    dot = name.rfind(b".")
    slash = name.rfind(b"/")
    ext = name[dot:].lower() if dot > slash + 1 else b""
    cached = _type_cache.get(ext)
    if cached is not None:
        return cached
    text_ext = ext.decode("latin-1")
    ctype = _TYPES.get(text_ext)
    if ctype is None and ext:
        guessed, encoding = mimetypes.guess_type("x" + text_ext, strict=False)
        ctype = guessed if guessed and not encoding else None
    ctype = ctype or _DEFAULT_TYPE
    if ctype.startswith("text/") or ctype in ("application/json", "application/xml", "image/svg+xml"):
        ctype += "; charset=utf-8"
    result = ctype.encode("latin-1")
    if len(_type_cache) < 1024:
        _type_cache[ext] = result
    return result


class FileSend:
    """A response whose body is a byte range of an open file.

    The protocol owns ``fd`` once it has this object and closes it when the
    range is sent or the connection goes away.
    """

    __slots__ = ("head", "fd", "offset", "count")

    def __init__(self, head: bytes, fd: int, offset: int, count: int) -> None:
        self.head = head
        self.fd = fd
        self.offset = offset
        self.count = count

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


Reply = Union[bytes, FileSend]


def _etag(st: os.stat_result) -> bytes:
    # nginx's form: hex mtime seconds and size; changes when either does.
    return b'"%x-%x"' % (int(st.st_mtime), st.st_size)


def _parse_http_date(value: bytes) -> Optional[int]:
    try:
        dt = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None or dt.tzinfo is None:
        return None
    return int(dt.timestamp())


def _conditionals(headers: List[Tuple[bytes, bytes]]) -> Tuple[Optional[bytes], ...]:
    """If-None-Match, If-Modified-Since, Range, If-Range: one pass, first of each."""
    inm = ims = rng = if_range = None
    for name, value in headers:
        n = len(name)
        if n == 5 or n == 8 or n == 13 or n == 17:
            lname = name.lower()
            if lname == b"range":
                rng = rng if rng is not None else value
            elif lname == b"if-range":
                if_range = if_range if if_range is not None else value
            elif lname == b"if-none-match":
                inm = inm if inm is not None else value
            elif lname == b"if-modified-since":
                ims = ims if ims is not None else value
    return inm, ims, rng, if_range


def _etag_matches(header: bytes, etag: bytes, weak: bool) -> bool:
    """``If-None-Match`` (weak comparison) or ``If-Range`` (strong)."""
    header = header.strip()
    if header == b"*":
        return True
    for tag in header.split(b","):
        tag = tag.strip()
        if tag.startswith(b"W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def parse_range(value: bytes, size: int) -> Union[None, Tuple[int, int], str]:
    """One ``bytes=`` range -> ``(start, end_inclusive)``; ``"unsatisfiable"``;
    or ``None`` when the header is to be ignored (malformed, other units, or
    several ranges: answering those with the whole file is allowed by
    RFC 9110 14.2 and avoids multipart responses).
    """
    value = value.strip()
    if not value[:6].lower() == b"bytes=":
        return None
    spec = value[6:].strip()
    if b"," in spec:
        return None
    first, dash, last = spec.partition(b"-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid spec: ignore the header
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1))


class StaticFiles:
    """Serve files under ``root``.

    ``handle(request, clock, conn)`` returns the complete reply: ``bytes``,
    or a :class:`FileSend` for bodies larger than ``inline_max``.
    """

    def __init__(self, root: str, *, index: str = "index.html", listing: bool = True,
                 inline_max: int = 16384, cache_max: int = 32 << 20) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"--dir {root!r} is not a directory")
        self.root = os.fsencode(real)
        self._root_slash = self.root.rstrip(b"/") + b"/"
        self.index = os.fsencode(index) if index else b""
        self.listing = listing
        self.inline_max = inline_max
        self.cache_max = cache_max
        # (st_dev, st_ino) of files whose containment was checked on an open
        # descriptor; validators and small-file bytes keyed the same way and
        # checked against (size, mtime_ns, ctime_ns) of a fresh stat.
        self._verified: Dict[Tuple[int, int], None] = {}
        self._meta: Dict[bytes, Tuple[Any, ...]] = {}  # by path: the Content-Type comes from the name
        self._paths: Dict[bytes, Any] = {}  # request path -> _fs_path(): the decoding is pure
        self._content: Dict[Tuple[int, int], Tuple[Tuple[int, int, int], bytes]] = {}
        self._content_bytes = 0
        # Complete responses for the clock's current second (see the module
        # docstring): request target -> [GET keep, HEAD keep, GET close, HEAD close].
        self._hot: Dict[bytes, List[Optional[bytes]]] = {}
        self._hot_date = b""  # the Clock.date_line they were made with
        self._hot_bytes = 0

    # -- resolution ---------------------------------------------------------

    def _fs_path(self, raw_path: bytes) -> Optional[Tuple[bytes, bool]]:
        """Request path -> (filesystem path under root, had trailing slash), or None."""
        if not raw_path.startswith(b"/"):
            return None
        path = unquote_to_bytes(raw_path)
        if b"\0" in path:
            return None
        parts = []
        for seg in path.split(b"/"):
            if seg == b"..":
                return None  # never climb, not even within the root
            if seg and seg != b".":
                parts.append(seg)
        slash = path.endswith(b"/")
        # Keep a trailing slash: open("file/") fails with ENOTDIR, as it should.
        return self._root_slash + b"/".join(parts) + (b"/" if slash and parts else b""), slash

    def _inside(self, fd: int, fallback_path: bytes) -> bool:
        if _HAVE_PROC:
            try:
                real = os.fsencode(os.readlink(_PROC_FD % fd))
            except OSError:
                return False
        else:  # pragma: no cover - non-Linux
            real = os.path.realpath(fallback_path)
        return self._under_root(real)

    def _under_root(self, real: bytes) -> bool:
        return real == self.root or real.startswith(self._root_slash)

    def _verify(self, fd: int, st: os.stat_result, path: bytes) -> bool:
        """Is the open ``fd`` (whose fstat is ``st``) a file under the root?"""
        ident = (st.st_dev, st.st_ino)
        if ident in self._verified:
            return True
        if not self._inside(fd, path):
            return False
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[ident] = None
        return True

    def _open(self, path: bytes, dir_fd: Optional[int] = None,
              expect: Optional[os.stat_result] = None) -> Optional[Tuple[int, os.stat_result]]:
        """Open ``path`` if it is a regular file or directory under the root.

        With ``expect`` (a stat of the same path), the opened file must be
        that very file (same device and inode), else None: it was replaced
        in between.
        """
        try:
            fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _NO_FDS:
                raise _OutOfDescriptors() from None
            return None
        try:
            st = os.fstat(fd)
            if expect is not None and (st.st_dev != expect.st_dev or st.st_ino != expect.st_ino):
                pass
            elif (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and self._verify(fd, st, path):
                return fd, st
        except OSError:
            pass
        os.close(fd)
        return None

    # -- responses ----------------------------------------------------------

    def handle(self, req: Request, clock: Clock, conn: int) -> Reply:
        return self.serve(req.raw_target, req.raw_headers, req.method == "HEAD", clock, conn)

    def serve(self, target: bytes, headers: List[Tuple[bytes, bytes]], head_only: bool,
              clock: Clock, conn: int) -> Reply:
        """The reply to GET (or HEAD) ``target`` with request ``headers``.

        Out of file descriptors (EMFILE/ENFILE), a file that would need one
        is a 503 with ``Retry-After``: a 404 would tell the client (and any
        cache) that a file which exists does not."""
        if self._hot_date is clock.date_line:
            hot = self._hot.get(target)
            if hot is not None:
                reply = hot[conn * 2 + head_only]
                if reply is not None:
                    for name, _ in headers:
                        if len(name) in _CONDITIONAL_LENGTHS and name.lower() in _CONDITIONAL_NAMES:
                            break
                    else:
                        return reply
        try:
            return self._serve(target, headers, head_only, clock, conn)
        except _OutOfDescriptors:
            return simple_response(clock, 503, conn, head_only, extra=b"Retry-After: 1\r\n")

    def _serve(self, target: bytes, headers: List[Tuple[bytes, bytes]], head_only: bool,
               clock: Clock, conn: int) -> Reply:
        path, query = split_target(target)
        resolved = self._paths.get(path, _MISSING)
        if resolved is _MISSING:
            resolved = self._fs_path(path)
            if len(self._paths) >= _PATHS_MAX:
                self._paths.clear()
            self._paths[path] = resolved
        if resolved is not None:
            try:
                st = os.stat(resolved[0])
            except (OSError, ValueError):
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                reply = self._file(target, headers, clock, conn, resolved[0], st, head_only)
                if reply is not None:
                    return reply
            elif st is not None and stat.S_ISDIR(st.st_mode):
                opened = self._open(resolved[0], expect=st)
                if opened is not None:
                    try:
                        return self._directory(target, path, query, headers, clock, conn, opened[0], resolved,
                                               head_only)
                    finally:
                        os.close(opened[0])
        return simple_response(clock, 404, conn, head_only)

    def _directory(self, target, raw_path, query, headers, clock, conn, fd, resolved, head_only) -> Reply:
        fs_path, slash = resolved
        if not slash:
            # Relative links in the listing or index.html need the slash.
            location = raw_path + b"/"
            if query:
                location += b"?" + query
            return simple_response(clock, 301, conn, head_only, extra=b"Location: " + location + b"\r\n")
        if self.index:
            index_path = fs_path.rstrip(b"/") + b"/" + self.index
            try:
                ist = os.stat(self.index, dir_fd=fd)
            except OSError:
                ist = None
            if ist is not None and stat.S_ISREG(ist.st_mode):
                reply = self._file(target, headers, clock, conn, index_path, ist, head_only,
                                   dir_fd=fd, name=self.index)
                if reply is not None:
                    return reply
        if not self.listing:
            return simple_response(clock, 403, conn, head_only)
        body = self._listing(fd, fs_path, raw_path)
        if body is None:
            return simple_response(clock, 404, conn, head_only)
        head = build_head(clock, 200, conn, len(body), b"Content-Type: " + HTML_UTF8 + b"\r\n")
        return head if head_only else head + body

    def _listing(self, fd: int, fs_path: bytes, raw_path: bytes) -> Optional[bytes]:
        """The directory's HTML listing: only entries a request would be
        served (regular files and directories, symlinks only when they stay
        under the root), so no link in it answers 404."""
        entries = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    is_dir = e.is_dir()  # both follow symlinks
                    if not (is_dir or e.is_file()):
                        continue  # FIFOs, sockets, devices, dangling links
                    if e.is_symlink() and not self._under_root(os.path.realpath(fs_path + os.fsencode(e.name))):
                        continue
                    entries.append((e.name, is_dir))
        except OSError as exc:
            if exc.errno in _NO_FDS:
                raise _OutOfDescriptors() from None
            return None
        entries.sort(key=lambda e: os.fsencode(e[0]))
        shown = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        title = html.escape("Directory listing for " + shown, quote=False)
        lines = [
            "<!DOCTYPE HTML>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f"<title>{title}</title>", "</head>", "<body>", f"<h1>{title}</h1>", "<hr>", "<ul>",
        ]
        for name, is_dir in entries:
            raw = os.fsencode(name)
            display = raw.decode("utf-8", "replace") + ("/" if is_dir else "")
            href = quote(raw) + ("/" if is_dir else "")
            lines.append(f'<li><a href="{html.escape(href)}">{html.escape(display, quote=False)}</a></li>')
        lines += ["</ul>", "<hr>", "</body>", "</html>", ""]
        return "\n".join(lines).encode("utf-8")

    def _file(self, target, headers, clock, conn, path, st, head_only, dir_fd=None, name=None) -> Optional[Reply]:
        """The reply for a regular file whose stat is ``st``; None if it is
        not to be served (outside the root, or replaced while we looked).

        A file is opened only when its bytes are needed and not cached, and
        its containment is checked on the opened descriptor unless that very
        file (device, inode) was checked before.  A plain 200 answer is kept
        for the rest of the clock's second under ``target``.
        """
        ident = (st.st_dev, st.st_ino)
        fd = -1
        if ident not in self._verified:
            opened = self._open(path if dir_fd is None else name, dir_fd, expect=st)
            if opened is None:
                return None
            fd = opened[0]
        try:
            size = st.st_size
            key = (size, st.st_mtime_ns, st.st_ctime_ns)
            meta = self._meta.get(path)
            if meta is None or meta[0] != ident or meta[1] != key:
                mtime = int(st.st_mtime)
                etag = _etag(st)
                modified = http_date(mtime)
                validators = b"Last-Modified: " + modified + b"\r\nETag: " + etag + b"\r\n"
                extra = b"Content-Type: " + content_type_for(name or path) + b"\r\nAccept-Ranges: bytes\r\n" + validators
                if len(self._meta) >= _VERIFIED_MAX:
                    self._meta.clear()
                meta = self._meta[path] = (ident, key, mtime, modified, etag, validators, extra)
            _, _, mtime, modified, etag, validators, extra = meta
            inm, ims, rng, if_range = _conditionals(headers)
            if inm is not None:
                not_modified = _etag_matches(inm, etag, weak=True)
            elif ims is not None:
                # Clients send back the Last-Modified they were given: no date to parse.
                ims_time = mtime if ims == modified else _parse_http_date(ims)
                not_modified = ims_time is not None and mtime <= ims_time
            else:
                not_modified = False
            if not_modified:
                return build_head(clock, 304, conn, None, validators)

            status, start, count = 200, 0, size
            if rng is not None and self._if_range_ok(if_range, etag, mtime):
                parsed = parse_range(rng, size)
                if parsed == "unsatisfiable":
                    body = b"416 Range Not Satisfiable\n"
                    head = build_head(
                        clock, 416, conn, len(body),
                        b"Content-Type: text/plain; charset=utf-8\r\nContent-Range: bytes */%d\r\n" % size,
                    )
                    return head if head_only else head + body
                if parsed is not None:
                    first, last = parsed  # type: ignore[misc]
                    status, start, count = 206, first, last - first + 1
                    extra += b"Content-Range: bytes %d-%d/%d\r\n" % (first, last, size)
            if head_only or size <= self.inline_max:
                if head_only:
                    reply = build_head(clock, status, conn, count, extra)
                else:
                    data = self._small_file(ident, key, fd, path, dir_fd, name, st)
                    if data is None:
                        return None
                    reply = build_head(clock, status, conn, count, extra) + data[start:start + count]
                if inm is None and ims is None and rng is None:
                    # Bytes only the small-file cache vouches for (not torn by a write).
                    kept = self._content.get(ident)
                    if head_only or (kept is not None and kept[1] is data):
                        self._remember(target, clock.date_line, conn * 2 + head_only, reply)
                return reply
            if fd < 0:
                opened = self._open(path if dir_fd is None else name, dir_fd, expect=st)
                if opened is None:
                    return None
                fd = opened[0]
            if count <= self.inline_max:  # a small range of a large file
                data = os.pread(fd, count, start)
                if len(data) != count:
                    return None
                return build_head(clock, status, conn, count, extra) + data
            reply = FileSend(build_head(clock, status, conn, count, extra), fd, start, count)
            fd = -1  # the protocol owns it now
            return reply
        finally:
            if fd >= 0:
                os.close(fd)

    def _remember(self, target: bytes, date_line: bytes, variant: int, reply: bytes) -> None:
        """Keep ``reply`` for ``target`` while the clock's Date line is ``date_line``."""
        if self._hot_date is not date_line:
            self._hot = {}
            self._hot_date = date_line
            self._hot_bytes = 0
        if self._hot_bytes + len(reply) > self.cache_max:
            return  # full until the next second empties it
        hot = self._hot.get(target)
        if hot is None:
            if len(self._hot) >= _PATHS_MAX:
                return
            hot = self._hot[target] = [None, None, None, None]
        hot[variant] = reply  # empty: a kept variant is answered before it could get here
        self._hot_bytes += len(reply)

    def _small_file(self, ident, key, fd, path, dir_fd, name, st) -> Optional[bytes]:
        """A small file's bytes: from the cache if the file is unchanged
        (same size, mtime and ctime: any write changes ctime), else read
        and kept if nothing changed it while we read nor shortly before."""
        cached = self._content.get(ident)
        if cached is not None and cached[0] == key:
            return cached[1]
        own = fd < 0
        if own:
            opened = self._open(path if dir_fd is None else name, dir_fd, expect=st)
            if opened is None:
                return None
            fd = opened[0]
        try:
            data = os.pread(fd, key[0] + 1, 0)
            after = os.fstat(fd)
        finally:
            if own:
                os.close(fd)
        if len(data) != key[0]:
            return None  # changed while we read: 404 rather than a wrong length
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != key or time.time() - st.st_ctime < _RACY_S:
            # Written while we read (the bytes may be torn: served, not
            # kept), or changed recently: timestamps are coarse (a kernel
            # tick), so a file changed again within the same tick could keep
            # size, mtime and ctime.  Like git's "racily clean" entries, cache
            # only files whose last change is older than that.
            return data
        if self._content_bytes + len(data) > self.cache_max:
            self._content.clear()
            self._content_bytes = 0
        old = self._content.pop(ident, None)
        if old is not None:
            self._content_bytes -= len(old[1])
        self._content[ident] = (key, data)
        self._content_bytes += len(data)
        return data

    @staticmethod
    def _if_range_ok(if_range: Optional[bytes], etag: bytes, mtime: int) -> bool:
        """Whether a Range applies given If-Range (RFC 9110 13.1.5)."""
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith((b'"', b"W/")):
            return _etag_matches(if_range, etag, weak=False)
        when = _parse_http_date(if_range)
        return when is not None and when == mtime
