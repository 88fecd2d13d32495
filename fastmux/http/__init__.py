"""``fastmux serve http``: an HTTP/1.1 server on fastmux's reactor.

Pure Python on top of the compiled core; requests are parsed by httptools
(llhttp).  Pieces, one module each:

* :mod:`.protocol` -- the connection protocol and the per-server state;
* :mod:`.request` -- the request object applications receive;
* :mod:`.response` -- status lines, headers, the once-a-second Date cache;
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

from .app import load_app, render
from .protocol import HttpConfig, HttpProtocol, HttpServer
from .request import Request
from .static import StaticFiles

__all__ = [
    # serving
    "HttpServer",
    "HttpConfig",
    "HttpProtocol",
    "StaticFiles",
    # applications
    "Request",
    "load_app",
    "render",
]
