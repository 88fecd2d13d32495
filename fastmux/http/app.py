"""The application hook: answer your own routes.

An application is a plain callable taking a :class:`~fastmux.http.request.Request`
and returning one of:

* ``None`` -- "not mine": the server goes on to ``--dir`` (if given) or the
  built-in ``/`` hello world, else 404;
* ``(status, headers, body)`` -- ``headers`` a list of ``(name, value)``
  pairs or a dict; ``body`` one of ``bytes``, ``str`` (sent as UTF-8), a
  ``pathlib.Path``/``os.PathLike`` (the file is sent with ``sendfile``), or a
  binary file object with ``fileno()`` (sent with ``sendfile`` from its
  current position, then closed).

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

import importlib
import logging
import os
import sys
from typing import Any, Callable

from .request import Request
from .response import Clock, build_head, encode_headers, simple_response
from .static import FileSend, Reply, content_type_for

__all__ = ["App", "load_app", "render"]

App = Callable[[Request], Any]
log = logging.getLogger("fastmux.http")

_DROP = {b"content-length", b"transfer-encoding", b"connection"}
_NO_BODY = {204, 304}


def load_app(spec: str) -> App:
    """``"package.module:callable"`` (``module:obj.attr`` works too) -> the callable.

    The current directory is put on ``sys.path`` first, as ``python -m``
    does, so ``--app myapp:app`` finds ``./myapp.py``.  A module that cannot
    be imported (not found, or failing as it runs) raises ImportError with a
    one-line message.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app expects MODULE:CALLABLE, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise ImportError(f"--app {spec}: cannot import {module_name}: SyntaxError: {exc.msg} "
                          f"({exc.filename}:{exc.lineno})", name=module_name) from exc
    except Exception as exc:  # whatever the module raised while running: one line, not a traceback
        raise ImportError(f"--app {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}",
                          name=module_name) from exc
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def render(result: Any, req: Request, clock: Clock, conn: int) -> Reply:
    """Turn an application's ``(status, headers, body)`` into reply bytes or a FileSend."""
    try:
        status, headers, body = result
        status = int(status)
        if not 100 <= status <= 999:
            raise ValueError(f"status {status} out of range")
        pairs = list(headers.items() if isinstance(headers, dict) else headers or ())
        extra, names = encode_headers(pairs)
        if not _DROP.isdisjoint(names):
            extra, names = encode_headers(p for p, n in zip(pairs, names) if n not in _DROP)
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
    head = build_head(clock, status, conn, length, extra, server=b"server" not in names, date=b"date" not in names)
    if data is not None:
        return head if head_only else head + data
    # File body: hand the descriptor over (a dup, so the caller's object can close).
    try:
        if head_only or count <= 0:
            return head
        return FileSend(head, os.dup(fd), start, count)
    finally:
        file_obj.close()  # type: ignore[union-attr]
