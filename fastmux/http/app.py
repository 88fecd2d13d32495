"""The application hook: answer your own routes.

An application is a plain callable taking a :class:`~fastmux.http.request.Request`
and returning one of:

* ``None`` -- "not mine": the server goes on to ``--dir`` (if given) or the
  built-in ``/`` hello world, else 404;
* ``(status, headers, body)`` -- ``headers`` a list of ``(name, value)``
  pairs or a dict; ``body`` one of ``bytes``, ``str`` (sent as UTF-8), a
  ``pathlib.Path``/``os.PathLike`` (the file is sent with ``sendfile``), or a
  binary file object with ``fileno()`` (sent with ``sendfile`` from its
  current position, then closed);
* a file alone -- a ``pathlib.Path``/``os.PathLike`` or a binary file
  object with ``fileno()``: the same as ``(200, [], file)``.

The server frames the response: it adds ``Date``, ``Server``,
``Content-Length`` and ``Connection`` (your values for those four are
dropped, except ``Server`` and ``Date``, which you may override), defaults
``Content-Type`` to ``text/plain; charset=utf-8`` for ``str`` bodies,
``application/octet-stream`` for ``bytes`` and a type guessed from the name
for files, and omits the body for HEAD, 1xx, 204 and 304.  The callable runs
on the event loop: keep it quick (no blocking I/O).

Example (``myapp.py``)::

    import json

    def app(request):
        if request.path == "/hello":
            name = request.query or "world"
            return 200, [("Content-Type", "text/plain; charset=utf-8")], f"hello, {name}\\n"
        if request.path == "/echo" and request.method == "POST":
            return 200, {"Content-Type": "application/octet-stream"}, request.body
        if request.path == "/api/info":
            body = json.dumps({"method": request.method, "ua": request.get_header("user-agent")})
            return 200, [("Content-Type", "application/json")], body
        return None  # everything else: --dir, or 404

Run it with ``fastmux serve http --app myapp:app --dir ./public``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

try:
    import cython  # compiled: Cython's compile-time module; pure: Cython's shadow module, if installed
except ImportError:  # pragma: no cover - Cython is not a run-time dependency
    from ..reactor import _cython_shim as cython

from .._callables import load_callable
from .._impl import load_twin
from .static import FileSend, Reply, content_type_for

_response = load_twin("fastmux.http._response_c", "fastmux.http.response")
encode_headers, simple_response = _response.encode_headers, _response.simple_response
if cython.compiled:  # cimported by _app_c.pxd: C calls, C fields
    from ._request_c import Request
    from ._response_c import Clock, head_end, head_start
else:  # the twins the protocol uses (see fastmux.http.protocol)
    Request = load_twin("fastmux.http._request_c", "fastmux.http.request").Request
    Clock = _response.Clock
    head_end, head_start = _response.head_end, _response.head_start

__all__ = ["App", "load_app", "render"]

App = Callable[[Request], Any]
log = logging.getLogger("fastmux.http")

_DROP = {b"content-length", b"transfer-encoding", b"connection"}
_NO_BODY = {204, 304}
_MAX_HEADS = 256  # cached head openings per clock second (see _head_key)


def _head_key(status: Any, headers: Any, text: bool) -> Any:
    """What a response head (up to Content-Length) is made of, or None when
    it is not cacheable.  Cacheable: a status with a body, and headers a list
    or tuple of pairs of ``str``/``bytes`` exactly -- anything else (an int,
    whose key would equal a bool's, or an object whose ``str()`` may change)
    is rendered afresh each time.  ``text``: the body is a ``str`` (it
    decides the default Content-Type)."""
    if type(status) is not int or not 200 <= status <= 999 or status == 204 or status == 304:
        return None
    kind = type(headers)
    if kind is not list and kind is not tuple:
        return None
    for pair in headers:
        if not _plain_pair(pair):
            return None
    return (status, text, tuple(headers))


def _plain_pair(pair: Any) -> bool:
    """A header pair whose rendering depends on its value alone."""
    if type(pair) is not tuple or len(pair) != 2:
        return False
    kind = type(pair[0])
    if kind is not str and kind is not bytes:
        return False
    kind = type(pair[1])
    return kind is str or kind is bytes


def _same_shape(clock: Clock, status: Any, headers: Any, text: bool) -> bool:
    """Whether a response is of the shape of the last one whose head was
    cached (``clock.last_opening``): the same status, body kind and header
    pairs -- the very tuples, as an app's constant pairs are, or equal plain
    ones.  Cheaper than building its _head_key and looking that up."""
    if clock.last_opening is None or type(status) is not int or status != clock.last_status:
        return False
    if text != clock.last_text:
        return False
    kind = type(headers)
    if kind is not list and kind is not tuple:
        return False
    last = clock.last_headers
    n = len(last)
    if len(headers) != n:
        return False
    for i in range(n):
        pair = headers[i]
        if pair is not last[i] and not (_plain_pair(pair) and pair == last[i]):
            return False
    return True


def _utf8(text: str) -> bytes:
    """``text.encode("utf-8")``; compiled, a C call that looks up no codec."""
    return text.encode("utf-8")


def _remember(clock: Clock, key: Any, opening: bytes) -> None:
    """Make ``opening`` (cached under ``key``) the one _same_shape compares with."""
    clock.last_status, clock.last_text, clock.last_headers = key
    clock.last_opening = opening
    clock.last_end_key = -1


def _framed(clock: Clock, length: int, conn: int) -> bytes:
    """``clock.last_opening`` with the end of its head for a body of ``length``."""
    key = length * 2 + conn
    if key != clock.last_end_key:
        clock.last_head = clock.last_opening + head_end(length, conn)
        clock.last_end_key = key
    return clock.last_head


def load_app(spec: str) -> App:
    """``--app``'s ``"package.module:callable"`` -> the callable (see
    :func:`fastmux._callables.load_callable`: found from the current
    directory too; errors are one line)."""
    return load_callable(spec, "--app")


def render(result: Any, req: Request, clock: Clock, conn: int) -> Reply:
    """Turn an application's ``(status, headers, body)`` into reply bytes or a FileSend."""
    key = None
    if type(result) is tuple and len(result) == 3:
        body = result[2]
        kind = type(body)
        if kind is bytes or kind is str:
            # The common shape: the head's opening (status line to the
            # app's headers) is what it was for the same key this second,
            # most often the last response's.
            cached = _same_shape(clock, result[0], result[1], kind is str)
            if not cached:
                key = _head_key(result[0], result[1], kind is str)
                if key is not None:
                    opening = clock.heads.get(key)
                    if opening is not None:
                        _remember(clock, key, opening)
                        cached = True
            if cached:
                data = _utf8(body) if kind is str else body
                head = _framed(clock, len(data), conn)
                if req.method == "HEAD":
                    return head
                return head + data
    if type(result) is not tuple and (isinstance(result, os.PathLike) or hasattr(result, "fileno")):
        result = (200, (), result)  # a file alone (a file object would otherwise unpack as lines)
    try:
        status, headers, body = result
        status = int(status)
        if not 100 <= status <= 999:
            raise ValueError(f"status {status} out of range")
        pairs = list(headers.items() if isinstance(headers, dict) else headers or ())
        extra, names = encode_headers(pairs)
        if not _DROP.isdisjoint(names):
            extra, names = encode_headers([p for p, n in zip(pairs, names) if n not in _DROP])
    except Exception:
        log.exception("bad response from application for %r: %r", req, result)
        return simple_response(clock, 500, conn, req.method == "HEAD")
    head_only = req.method == "HEAD" or status in _NO_BODY or status < 200
    file_obj = None
    if isinstance(body, str):
        data = body.encode("utf-8")
        default_type = b"text/plain; charset=utf-8"
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        default_type = b"application/octet-stream"
    elif body is None:
        data = b""
        default_type = b"text/plain; charset=utf-8"
    elif isinstance(body, os.PathLike) or hasattr(body, "fileno"):
        data = None
        try:
            if isinstance(body, os.PathLike):
                file_obj = open(body, "rb")
                name = os.fsencode(body)
            else:
                file_obj = body
                name = os.fsencode(getattr(body, "name", "") if isinstance(getattr(body, "name", ""), (str, bytes)) else "")
            fd = file_obj.fileno()
            start = file_obj.tell() if file_obj.seekable() else 0
            count = os.fstat(fd).st_size - start
        except Exception:
            log.exception("application %r: cannot send file %r", req, body)
            if file_obj is not None:
                file_obj.close()
            return simple_response(clock, 500, conn, req.method == "HEAD")
        default_type = content_type_for(name)
    else:
        log.error("application for %r returned a body of type %s", req, type(body).__name__)
        return simple_response(clock, 500, conn, req.method == "HEAD")

    if b"content-type" not in names and status not in _NO_BODY and status >= 200:
        extra += b"Content-Type: " + default_type + b"\r\n"
    length = len(data) if data is not None else count
    if status < 200 or status in _NO_BODY:
        length = None
    opening = head_start(clock, status, extra, b"server" not in names, b"date" not in names)
    if key is not None:
        heads = clock.heads
        if len(heads) >= _MAX_HEADS:
            heads.clear()
        heads[key] = opening
        _remember(clock, key, opening)
    head = opening + head_end(length, conn)
    if data is not None:
        return head if head_only else head + data
    # File body: hand the descriptor over (a dup, so the caller's object can close).
    try:
        if head_only or count <= 0:
            return head
        return FileSend(head, os.dup(fd), start, count)
    finally:
        file_obj.close()  # type: ignore[union-attr]
