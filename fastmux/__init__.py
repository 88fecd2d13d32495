"""fastmux: a fast I/O multiplexer for Python.

Layers, one direction of dependency: servers -> reactor -> compiled core.
``fastmux.selectors`` is a drop-in for the stdlib ``selectors`` module.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict

from ._version import __version__

if TYPE_CHECKING:
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


_REACTOR_NAMES = frozenset(("Reactor", "Handle", "TimerHandle", "BaseProtocol", "Protocol", "DatagramProtocol"))


def __getattr__(name: str) -> Any:
    # The reactor loads on first use, so `fastmux --version` or a program
    # that only wants fastmux.selectors does not pay for it.
    if name in _REACTOR_NAMES:
        return getattr(importlib.import_module(".reactor", __name__), name)
    raise AttributeError(f"module 'fastmux' has no attribute {name!r}")


def info() -> Dict[str, Any]:
    """Describe this installation: version, where it is, compiled or
    fallback (the core, and each compiled twin loaded so far: ``"-"`` for
    one not loaded), backends."""
    import os

    from . import _impl, _pollers, selectors

    return {
        "version": __version__,
        "path": os.path.dirname(os.path.abspath(__file__)),
        "implementation": _pollers.IMPLEMENTATION,
        "compiled": _pollers.IMPLEMENTATION == "c",
        "twins": {
            "core": _pollers.IMPLEMENTATION,
            "reactor": _impl.chosen("fastmux.reactor._loop_c"),
            "http": _impl.chosen("fastmux.http._protocol_c"),
        },
        "backends": list(_pollers.BACKENDS),
        "default_backend": selectors.DefaultSelector.__name__,
    }
