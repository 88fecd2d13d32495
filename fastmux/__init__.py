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
    """Describe this installation: version, compiled or fallback, backends."""
    from . import _pollers, selectors

    return {
        "version": __version__,
        "implementation": _pollers.IMPLEMENTATION,
        "compiled": _pollers.IMPLEMENTATION == "c",
        "backends": list(_pollers.BACKENDS),
        "default_backend": selectors.DefaultSelector.__name__,
    }
