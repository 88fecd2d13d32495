"""Chooses the compiled core or the pure-Python fallback, once, at import.

The fallback is used when ``FASTMUX_NO_EXTENSIONS`` is set to 1/true/yes/on
(``0`` or an empty value does not disable the extensions), off CPython, or
off Linux.  Everything else imports the compiled modules and falls back
only if they are missing, which ``tests/core/test_impl.py`` turns into a
failure for builds that should be compiled.

This module is the one record of what was chosen: each twin's
``IMPLEMENTATION`` and :func:`fastmux.info` ask :func:`chosen`.
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
from types import ModuleType
from typing import Dict, List


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


WANT_EXTENSIONS: bool = (
    not env_flag("FASTMUX_NO_EXTENSIONS")
    and platform.python_implementation() == "CPython"
    and sys.platform.startswith("linux")
)

# compiled module name -> "c" or "py", for every twin loaded so far
_CHOSEN: Dict[str, str] = {}


def load(stem: str) -> ModuleType:
    """The compiled ``fastmux._<stem>_c`` if wanted and built, else ``_<stem>_py``."""
    return load_twin(f"fastmux._{stem}_c", f"fastmux._{stem}_py")


def load_twin(compiled: str, pure: str) -> ModuleType:
    """The module named ``compiled`` if wanted and built, else ``pure``.

    For twins that do not follow the ``_<stem>_c``/``_<stem>_py`` naming:
    ``fastmux.reactor._loop_c`` is ``fastmux/reactor/loop.py`` compiled as
    it is (see setup.py), so its pure twin is ``fastmux.reactor.loop``.
    """
    if WANT_EXTENSIONS:
        try:
            module = importlib.import_module(compiled)
        except ImportError:
            pass
        else:
            _CHOSEN[compiled] = "c"
            return module
    _CHOSEN[compiled] = "py"
    return importlib.import_module(pure)


def chosen(compiled: str) -> str:
    """``"c"`` or ``"py"``: which twin :func:`load_twin` loaded for
    ``compiled``; ``"-"`` if it has not been loaded."""
    return _CHOSEN.get(compiled, "-")


def implementations(compiled: str) -> List[str]:
    """``["c", "py"]`` when the module named ``compiled`` is wanted and built,
    else ``["py"]``: the twins that tests should run against."""
    if WANT_EXTENSIONS:
        try:
            importlib.import_module(compiled)
            return ["c", "py"]
        except ImportError:
            pass  # tests/core/test_impl.py and tests/reactor/test_twin.py fail such a build
    return ["py"]
