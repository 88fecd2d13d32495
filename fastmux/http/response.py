"""Response heads: status lines, header serialization, the cached Date.

Everything here produces ``bytes`` ready for ``transport.write``.  The hot
path never formats: :class:`Clock` rebuilds the ``Date:`` header and the
precomputed hello-world responses once per second, and the protocol picks a
prebuilt variant by (keep-alive, HEAD).

Connection header policy (one place, used by every response): a response
after which the connection stays open says ``Connection: keep-alive``; one
after which it closes says ``Connection: close``.  HTTP/1.1 would not need
the first, but HTTP/1.0 clients that asked for keep-alive do, and saying it
always (as nginx does) means the hot path never has to ask the parser for
the version, which costs more than the 24 bytes.
"""
from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Dict, Iterable, List, Optional, Tuple

SERVER = b"fastmux"

# Connection variants, an index into CONNECTION_LINES.
KEEP, CLOSE = 0, 1
CONNECTION_LINES = (b"Connection: keep-alive\r\n", b"Connection: close\r\n")

HELLO_BODY = "Hello, World".encode("utf-8")
TEXT_UTF8 = b"text/plain; charset=utf-8"
HTML_UTF8 = b"text/html; charset=utf-8"

_REASONS: Dict[int, bytes] = {int(s): s.phrase.encode("latin-1") for s in HTTPStatus}
_STATUS_LINES: Dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``; unknown codes get an empty reason phrase."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status!r}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def http_date(timestamp: Optional[float] = None) -> bytes:
    """An IMF-fixdate (RFC 9110 5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(timestamp, usegmt=True).encode("ascii")


# A CR or LF in a header from user code would let it inject headers or a
# whole response: refuse rather than silently strip.  (A regex, not
# ``b"\r" in text``: bytes.__contains__ first tries the operand as an int
# and raises and clears a TypeError inside, which costs more than the search.)
_BAD_VALUE = re.compile(rb"[\r\n\0]").search
_BAD_NAME = re.compile(rb"[\r\n\0: ]").search


def encode_headers(headers: Iterable[Tuple[object, object]]) -> Tuple[bytes, List[bytes]]:
    """Serialize user headers; also returns their lower-cased names."""
    out = []
    names = []
    for name, value in headers:
        n = name if isinstance(name, bytes) else str(name).encode("latin-1")
        if isinstance(value, bytes):
            v = value
        elif isinstance(value, int):
            v = b"%d" % value
        else:
            v = str(value).encode("latin-1")
        if not n or _BAD_NAME(n) is not None:
            if _BAD_VALUE(n) is not None:
                raise ValueError(f"header contains CR, LF or NUL: {n!r}")
            raise ValueError(f"invalid header name {n!r}")
        if _BAD_VALUE(v) is not None:
            raise ValueError(f"header contains CR, LF or NUL: {v!r}")
        out.append(n + b": " + v + b"\r\n")
        names.append(n.lower())
    return b"".join(out), names


class Clock:
    """The server's notion of "now", refreshed once per second.

    ``date_line`` is the complete ``Date: ...\\r\\n`` header and ``hello`` the
    four complete hello-world responses: ``hello[conn * 2 + head]`` with
    ``conn`` KEEP or CLOSE and ``head`` 1 for HEAD.  ``hello`` is one list,
    updated in place, so a connection may hold it instead of asking the
    clock for it on every request.
    """

    __slots__ = ("date", "date_line", "hello", "heads", "_second", "_dates",
                 "last_status", "last_text", "last_headers", "last_opening", "last_end_key", "last_head")

    def __init__(self) -> None:
        self._second = -1
        self._dates: Dict[int, bytes] = {}
        self.date = b""
        self.date_line = b""
        self.hello: List[bytes] = []
        # Response heads up to Content-Length, by what they were made from
        # (see app.render): they hold the Date, so they live for one second.
        self.heads: Dict[object, bytes] = {}
        # The last head used from ``heads``, what it was made from (see
        # app.render) and, for the body length and connection of last_end_key,
        # the whole head (last_head).
        self.last_status = 0
        self.last_text = False
        self.last_headers: Tuple[object, ...] = ()
        self.last_opening: Optional[bytes] = None
        self.last_end_key = -1
        self.last_head = b""
        self.refresh()

    def refresh(self, now: Optional[float] = None) -> bool:
        """Rebuild the cached bytes if the wall-clock second changed."""
        if now is None:
            now = time.time()
        second = int(now)
        if second == self._second:
            return False
        self._second = second
        self.date = http_date(second)
        self.date_line = b"Date: " + self.date + b"\r\n"
        self.heads.clear()
        self.last_opening = None
        hello = []
        for conn in (KEEP, CLOSE):
            head = (
                b"HTTP/1.1 200 OK\r\nServer: " + SERVER + b"\r\n" + self.date_line
                + b"Content-Type: " + TEXT_UTF8 + b"\r\nContent-Length: %d\r\n" % len(HELLO_BODY)
                + CONNECTION_LINES[conn] + b"\r\n"
            )
            hello.append(head + HELLO_BODY)  # GET
            hello.append(head)  # HEAD: same headers, no body
        self.hello[:] = hello
        return True

    def format_date(self, seconds: int) -> bytes:
        """``http_date(seconds)``, cached (Last-Modified of popular files)."""
        text = self._dates.get(seconds)
        if text is None:
            if len(self._dates) >= 512:
                self._dates.clear()
            text = self._dates[seconds] = http_date(seconds)
        return text


def head_start(clock: Clock, status: int, extra: bytes = b"", server: bool = True, date: bool = True) -> bytes:
    """A response head up to its framing: status line, Server, Date, ``extra``."""
    return b"".join((
        status_line(status),
        b"Server: " + SERVER + b"\r\n" if server else b"",
        clock.date_line if date else b"",
        extra,
    ))


# head_end's results by content_length * 2 + conn: formatting the number
# costs more than the lookup, and a server sends few distinct lengths.
_ENDS: Dict[int, bytes] = {}
_MAX_ENDS = 4096


def head_end(content_length: Optional[int], conn: int) -> bytes:
    """The rest of a head: Content-Length (unless None), Connection, the blank line."""
    if content_length is None:
        return CONNECTION_LINES[conn] + b"\r\n"
    key = content_length * 2 + conn
    end = _ENDS.get(key)
    if end is None:
        if len(_ENDS) >= _MAX_ENDS:
            _ENDS.clear()
        end = _ENDS[key] = b"Content-Length: %d\r\n%s\r\n" % (content_length, CONNECTION_LINES[conn])
    return end


def build_head(
    clock: Clock,
    status: int,
    conn: int,
    content_length: Optional[int],
    extra: bytes = b"",
    server: bool = True,
    date: bool = True,
) -> bytes:
    """A complete response head: status, Server, Date, ``extra``, framing, Connection.

    ``extra`` is already-serialized header lines.  ``content_length=None``
    omits Content-Length (only for 1xx/204/304, which have no body).
    """
    return head_start(clock, status, extra, server, date) + head_end(content_length, conn)


def simple_response(
    clock: Clock,
    status: int,
    conn: int,
    head_only: bool = False,
    body: Optional[bytes] = None,
    extra: bytes = b"",
) -> bytes:
    """A small text response (errors, redirects): head plus body unless HEAD."""
    if body is None:
        body = b"%d %s\n" % (status, _REASONS.get(status, b""))
    head = build_head(clock, status, conn, len(body), b"Content-Type: " + TEXT_UTF8 + b"\r\n" + extra)
    return head if head_only else head + body


CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
