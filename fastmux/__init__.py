"""fastmux: a fast I/O multiplexer for Python.

Layers, one direction of dependency: servers -> reactor -> compiled core.
``fastmux.selectors`` is a drop-in for the stdlib ``selectors`` module.
"""
from __future__ import annotations

from typing import Any, Dict

from ._version import __version__
from .reactor import BaseProtocol, DatagramProtocol, Handle, Protocol, Reactor, TimerHandle

__all__ = [
    # version and build
    "__version__",
    "info",
    # the reactor
    "Reactor",
    "Handle",
    "TimerHandle",
    # protocols
    "BaseProtocol",
    "Protocol",
    "DatagramProtocol",
]


def info() -> Dict[str, Any]:
    """Describe this installation: version, where it is, compiled or
    fallback (the core and each compiled twin), backends."""
    import os

    from . import _impl, _pollers, selectors

    twins = {"core": _pollers.IMPLEMENTATION, "reactor": _impl.chosen("fastmux.reactor._loop_c")}
    try:
        from . import http
    except ImportError:  # the fallback's parser (httptools) is missing
        pass
    else:
        twins["http"] = http.IMPLEMENTATION
    return {
        "version": __version__,
        "path": os.path.dirname(os.path.abspath(__file__)),
        "implementation": _pollers.IMPLEMENTATION,
        "compiled": _pollers.IMPLEMENTATION == "c",
        "twins": twins,
        "backends": list(_pollers.BACKENDS),
        "default_backend": selectors.DefaultSelector.__name__,
    }
