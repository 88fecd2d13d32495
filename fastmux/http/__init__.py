"""``fastmux serve http``: an HTTP/1.1 server on fastmux's reactor.

Requests are parsed by llhttp, the parser httptools wraps.  Pieces, one
module each:

* :mod:`.protocol` -- the connection protocol and the per-server state.
  Like the reactor's loop, it is also compiled unchanged, as
  ``_protocol_c`` (typed by ``src/fastmux/http/_protocol_c.pxd``), and the
  request parser has a compiled twin, ``_parser_c`` (llhttp driven from C,
  httptools' interface).  ``HttpServer`` and friends come from the compiled
  twins unless ``fastmux._impl`` wants the pure-Python fallback;
  ``IMPLEMENTATION`` says which (``"c"`` or ``"py"``);
* :mod:`.request` -- the request object applications receive;
* :mod:`.response` -- status lines, headers, the once-a-second Date cache;
  these two and :mod:`.app` are compiled unchanged too (``_request_c``,
  ``_response_c``, ``_app_c``), and the protocol uses those twins;
* :mod:`.static` -- ``--dir``: static files with sendfile, ranges, 304s;
* :mod:`.app` -- the application hook (``--app module:callable``);
* :mod:`.cli_serve` -- the options and protocol factory ``fastmux serve http`` uses.

Serve your own routes with a callable (see :mod:`.app` for the full rules)::

    def app(request):
        if request.path == "/hello":
            return 200, [("Content-Type", "text/plain; charset=utf-8")], "hello\\n"
        return None  # not mine: --dir, the built-in "/", or 404

    # fastmux serve http --app myapp:app --port 8080
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._impl import chosen, load_twin
from .app import load_app
from .run import serve
from .static import StaticFiles

if TYPE_CHECKING:
    from .app import render
    from .protocol import HttpConfig, HttpProtocol, HttpServer
    from .request import Request
else:
    _protocol = load_twin("fastmux.http._protocol_c", "fastmux.http.protocol")
    HttpConfig = _protocol.HttpConfig
    HttpProtocol = _protocol.HttpProtocol
    HttpServer = _protocol.HttpServer
    # What the protocol uses: the compiled twins of request.py and app.py
    # where they are built, so an application's Request is this class.
    Request = load_twin("fastmux.http._request_c", "fastmux.http.request").Request
    render = load_twin("fastmux.http._app_c", "fastmux.http.app").render

IMPLEMENTATION: str = chosen("fastmux.http._protocol_c")

__all__ = [
    "IMPLEMENTATION",
    # serving
    "serve",
    "HttpServer",
    "HttpConfig",
    "HttpProtocol",
    "StaticFiles",
    # applications
    "Request",
    "load_app",
    "render",
]
