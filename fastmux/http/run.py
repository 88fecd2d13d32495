"""``fastmux.http.serve``: what ``fastmux serve http`` does, from a program.

    from fastmux.http import serve

    def app(request):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], f"hi {request.path}\\n"

    serve(app, port=8080, dir="./public", workers=4)

It runs on fastmux's reactor with the same limits, timeouts and graceful
shutdown (SIGINT/SIGTERM) as the command line, and returns 0 once shut down.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Union

from .app import App

__all__ = ["serve"]


def serve(
    app: Optional[App] = None,
    *,
    host: str = "127.0.0.1",
    port: Union[int, Sequence[int], None] = 8080,
    unix: Union[str, Sequence[str], None] = None,
    dir: Optional[str] = None,  # noqa: A002 - the CLI's --dir
    workers: int = 0,
    grace: float = 10.0,
    backlog: int = 1024,
    backend: Optional[str] = None,
    log_level: Optional[str] = "info",
    on_ready: Optional[Callable[[List[str]], None]] = None,
    **http_options: Any,
) -> int:
    """Serve ``app`` (a callable taking a Request, see :mod:`fastmux.http.app`;
    ``None``: hello world and ``dir`` only) until SIGINT or SIGTERM.

    ``port`` and ``unix`` take one value or several; ``port=0`` picks a free
    port (``on_ready(addresses)`` is told which, once every socket listens;
    by default the ``listening on ...`` line is printed).  ``workers`` > 0
    pre-forks that many processes sharing the ports.  ``http_options`` are
    ``fastmux serve http``'s own options by name: ``access_log``,
    ``max_body``, ``keepalive_timeout``, ``index``, ``no_listing``...
    ``log_level=None`` leaves logging as the program configured it.

    Raises ValueError before anything listens if the options cannot work
    (a missing ``dir``, say) and OSError if a socket cannot be bound.
    """
    from ..servers import launch, serving
    from ..servers.kinds import load_kind

    if app is not None and not callable(app):
        raise TypeError(f"app must be callable, got {type(app).__name__}")
    if workers < 0 or grace < 0:
        raise ValueError("workers and grace must be >= 0")
    mod = load_kind("http")
    opts = mod.options(app=app, dir=dir, **http_options)
    ports = [port] if isinstance(port, int) else list(port or [])
    paths = [unix] if isinstance(unix, str) else list(unix or [])
    vars(opts).update(kind="http", host=host, port=ports, unix=paths, backlog=backlog, backend=backend,
                      edge=False, workers=workers, grace=grace, loop="fastmux")
    if log_level is not None:
        launch.setup_logging(log_level)
    try:
        return launch.run_kind("http", mod, opts, on_ready or serving.print_ready)
    except launch.LaunchError as exc:
        if exc.code == 1:
            raise OSError(str(exc)) from None
        raise ValueError(str(exc)) from None
