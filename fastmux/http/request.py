# cython: boundscheck=False, wraparound=False
# (For the compiled twin, _request_c, whose byte loops are the point of it:
# every index in this module is tested against its bound first, none is
# negative.  Directive decorators would need Cython at run time.)
"""The request object handed to applications.

Built only when an application or the static-file handler needs one (the
hello-world path never makes one).  Fields are kept as the parser gave them
(``bytes``) and decoded lazily, on first use: the compiled parser hands over
a head that arrived in one read as its header section, unsplit, and
``get_header`` finds a field in it without splitting it (``split_head``
and ``find_field``).
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union
from urllib.parse import unquote

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from ..reactor import _cython_shim as cython

if cython.compiled:
    from cython.cimports.fastmux.http._bytes import byte_span
else:
    def byte_span(data: bytes, start: int, end: int) -> bytes:
        """``data[start:end]`` (compiled: one copy, no slice object)."""
        return data[start:end]

__all__ = ["Fields", "Request", "find_field", "new_request", "split_head", "split_target"]

# A request's header fields: (name, value) pairs, or the header section as
# received (see split_head), split when first asked for.
Fields = Union[List[Tuple[bytes, bytes]], bytes]


def split_target(target: bytes) -> Tuple[bytes, bytes]:
    """Request target -> (path, query), both still percent-encoded.

    Handles origin-form (``/a?b``) and absolute-form
    (``http://host/a?b``, which RFC 9112 3.2.2 says servers must accept);
    anything else (``*``) comes back as the path unchanged.
    """
    n = len(target)
    if n and target[0] == 47:  # '/': origin-form, the usual case; compiled, one C scan
        i = 0
        c = 0
        while i < n:
            c = target[i]
            if c == 63 or c == 35:  # '?' or '#'
                break
            i += 1
        if i == n:
            return target, b""
        if c == 63 and target.find(b"#", i) < 0:
            return target[:i], target[i + 1:]
    cut = target.find(b"#")
    if cut >= 0:
        target = target[:cut]
    if not target.startswith(b"/") and b"://" in target[:10]:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        qmark = rest.find(b"?")
        if slash < 0 or (0 <= qmark < slash):
            target = b"/" + (rest[qmark:] if qmark >= 0 else b"")
        else:
            target = rest[slash:]
    path, _, query = target.partition(b"?")
    return path, query


def split_head(head: bytes) -> List[Tuple[bytes, bytes]]:
    """A header section as llhttp passed it -- ``Name: value`` lines joined
    by CRLF, without the request line and the final empty line -- as
    ``(name, value)`` pairs, values without the OWS around them (RFC 9110
    5.5).  It needs no checks: llhttp (strict) admits no whitespace before
    the colon, no obsolete line folding and no CR or LF inside a value, so
    the first colon ends the name and the first CR the value.  Written as
    byte loops, which compile to one C scan."""
    fields = []
    n = len(head)
    i = 0
    while i < n:
        start = i
        while i < n and head[i] != 58:  # ':'
            i += 1
        name = byte_span(head, start, i)
        i += 1
        while i < n and (head[i] == 32 or head[i] == 9):  # SP, HTAB
            i += 1
        start = i
        while i < n and head[i] != 13:  # CR
            i += 1
        end = i
        while end > start and (head[end - 1] == 32 or head[end - 1] == 9):
            end -= 1
        fields.append((name, byte_span(head, start, end)))
        i += 2  # CRLF
    return fields


def _value_at(head: bytes, name: bytes) -> Tuple[int, int]:
    """Where the value of the first field called ``name`` (ASCII letters
    match either case) lies in a header section (see split_head):
    ``(start, end)``, or ``(-1, -1)``."""
    n = len(head)
    m = len(name)
    i = 0
    while i < n:
        start = i
        while i < n and head[i] != 58:  # ':'
            i += 1
        if i - start == m and _same_name(head, start, name):
            i += 1
            while i < n and (head[i] == 32 or head[i] == 9):
                i += 1
            start = i
            while i < n and head[i] != 13:
                i += 1
            while i > start and (head[i - 1] == 32 or head[i - 1] == 9):
                i -= 1
            return start, i
        while i < n and head[i] != 13:
            i += 1
        i += 2
    return -1, -1


def find_field(head: bytes, name: bytes) -> Optional[bytes]:
    """The value of the first field called ``name`` (ASCII letters match
    either case) in a header section (see split_head), or None; splits
    nothing else."""
    start, end = _value_at(head, name)
    return None if start < 0 else byte_span(head, start, end)


def new_request(
    method: str,
    raw_target: bytes,
    version: str,
    raw_headers: Fields,
    body: bytes,
    keep_alive: bool,
    peer: object,
    raw_trailers: Optional[List[Tuple[bytes, bytes]]],
) -> "Request":
    """``Request(...)``, for the compiled protocol a C call: no argument
    parsing, no Python call."""
    req = Request.__new__(Request)
    req._init(method, raw_target, version, raw_headers, body, keep_alive, peer, raw_trailers)
    return req


def _latin1(raw: bytes) -> str:
    """``raw.decode("latin-1")``; compiled, a C call that looks up no codec."""
    return raw.decode("latin-1")


def _decoded_path(raw: bytes) -> str:
    """A path percent-decoded (UTF-8, invalid bytes replaced); as sent when
    it has no ``%`` (a byte loop: compiled, a C scan, where ``bytes.find``
    is a method call that parses its arguments)."""
    for i in range(len(raw)):
        if raw[i] == 37:  # '%'
            return unquote(_latin1(raw), errors="replace")
    return _latin1(raw)


def _same_name(data: bytes, at: int, name: bytes) -> bool:
    """``data[at:at + len(name)].lower() == name.lower()`` (``data`` has that
    many bytes there); compiled, a byte loop that makes no copies."""
    n = len(name)
    for i in range(n):
        c = data[at + i]
        d = name[i]
        if 65 <= c <= 90:  # A-Z
            c += 32
        if 65 <= d <= 90:
            d += 32
        if c != d:
            return False
    return True


class Request:
    """One parsed HTTP request.

    Attributes:
        method: ``"GET"``, ``"POST"``, ... (``str``).
        target: the request target as sent, e.g. ``"/a%20b?x=1"`` (``str``).
        path: the target's path, percent-decoded (UTF-8, invalid bytes
            replaced), e.g. ``"/a b"``.
        query: the raw query string without ``?`` (``""`` when none).
        version: ``"1.1"`` or ``"1.0"``.
        headers: list of ``(name, value)`` ``str`` pairs in arrival order
            (latin-1 decoded, as HTTP defines).
        raw_headers: the same as ``bytes`` pairs, undecoded.
        trailers: the trailer fields of a chunked body, as ``headers``
            (``[]`` when none); never merged into ``headers`` (RFC 9110 6.5.1).
        body: the request body, ``bytes`` (``b""`` when none); bounded by the
            server's ``--max-body``.
        keep_alive: whether the connection stays open after the response.
        peer: the client's address as the transport reports it.
    """

    __slots__ = ("method", "raw_target", "version", "_raw_headers", "_head", "body", "keep_alive", "peer",
                 "raw_trailers", "_split")

    def __init__(
        self,
        method: str,
        raw_target: bytes,
        version: str,
        raw_headers: Fields,
        body: bytes = b"",
        keep_alive: bool = True,
        peer: object = None,
        raw_trailers: Optional[List[Tuple[bytes, bytes]]] = None,
    ) -> None:
        self._init(method, raw_target, version, raw_headers, body, keep_alive, peer, raw_trailers)

    def _init(
        self,
        method: str,
        raw_target: bytes,
        version: str,
        raw_headers: Fields,
        body: bytes,
        keep_alive: bool,
        peer: object,
        raw_trailers: Optional[List[Tuple[bytes, bytes]]],
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        self.version = version
        # Either the pairs, or the section they are split from on first use.
        if type(raw_headers) is bytes:
            self._head: Optional[bytes] = raw_headers
            self._raw_headers: Optional[List[Tuple[bytes, bytes]]] = None
        else:
            self._head = None
            self._raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive
        self.peer = peer
        self.raw_trailers = raw_trailers or []
        self._split: Optional[Tuple[bytes, bytes]] = None

    def _parts(self) -> Tuple[bytes, bytes]:
        if self._split is None:
            self._split = split_target(self.raw_target)
        return self._split

    @property
    def target(self) -> str:
        return self.raw_target.decode("latin-1")

    @property
    def raw_path(self) -> bytes:
        """The path as sent, still percent-encoded."""
        return self._parts()[0]

    @property
    def path(self) -> str:
        return _decoded_path(self._parts()[0])

    @property
    def query(self) -> str:
        return _latin1(self._parts()[1])

    @property
    def raw_headers(self) -> List[Tuple[bytes, bytes]]:
        if self._raw_headers is None:
            self._raw_headers = split_head(self._head)
            self._head = None
        return self._raw_headers

    @property
    def headers(self) -> List[Tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers]

    @property
    def trailers(self) -> List[Tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_trailers]

    def get_header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first header called ``name`` (case-insensitive), or ``default``."""
        raw_name = name.encode("latin-1")
        head = self._head
        if self._raw_headers is None:  # decoded from the section: no bytes in between
            start, end = _value_at(head, raw_name)
            return default if start < 0 else head[start:end].decode("latin-1")
        raw = self.get_raw_header(raw_name)
        return default if raw is None else _latin1(raw)

    def get_raw_header(self, name: bytes) -> Optional[bytes]:
        if self._raw_headers is None:
            return find_field(self._head, name)
        for n, v in self._raw_headers:
            if len(n) == len(name) and _same_name(n, 0, name):
                return v
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"
