"""The request object handed to applications.

Built only when an application or the static-file handler needs one (the
hello-world path never makes one).  Fields are kept as the parser gave them
(``bytes``) and decoded lazily, on first use.
"""
from __future__ import annotations

from typing import List, Optional, Tuple
from urllib.parse import unquote

__all__ = ["Request", "new_request", "split_target"]


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


def new_request(
    method: str,
    raw_target: bytes,
    version: str,
    raw_headers: List[Tuple[bytes, bytes]],
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


def _same_name(name: bytes, other: bytes) -> bool:
    """``name.lower() == other.lower()``, for names of the same length;
    compiled, a byte loop that makes no lowered copies."""
    n = len(name)
    for i in range(n):
        c = name[i]
        d = other[i]
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
        trailers: the trailer fields of a chunked body, as ``headers``
            (``[]`` when none); never merged into ``headers`` (RFC 9110 6.5.1).
        body: the request body, ``bytes`` (``b""`` when none); bounded by the
            server's ``--max-body``.
        keep_alive: whether the connection stays open after the response.
        peer: the client's address as the transport reports it.
    """

    __slots__ = ("method", "raw_target", "version", "raw_headers", "body", "keep_alive", "peer", "raw_trailers",
                 "_split")

    def __init__(
        self,
        method: str,
        raw_target: bytes,
        version: str,
        raw_headers: List[Tuple[bytes, bytes]],
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
        raw_headers: List[Tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        peer: object,
        raw_trailers: Optional[List[Tuple[bytes, bytes]]],
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        self.version = version
        self.raw_headers = raw_headers
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
        raw = self._parts()[0]
        if raw.find(b"%") < 0:  # nothing to unquote (find: see response._BAD_VALUE)
            return _latin1(raw)
        return unquote(_latin1(raw), errors="replace")

    @property
    def query(self) -> str:
        return _latin1(self._parts()[1])

    @property
    def headers(self) -> List[Tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers]

    @property
    def trailers(self) -> List[Tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_trailers]

    def get_header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first header called ``name`` (case-insensitive), or ``default``."""
        raw = self.get_raw_header(name.encode("latin-1"))
        return default if raw is None else _latin1(raw)

    def get_raw_header(self, name: bytes) -> Optional[bytes]:
        for n, v in self.raw_headers:
            if len(n) == len(name) and _same_name(n, name):
                return v
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"
