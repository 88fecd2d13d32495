"""``MODULE:NAME`` -> the callable it names: how ``--app`` and a menu file's
``"call"`` entries find user code."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

__all__ = ["load_callable"]


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The callable ``spec`` names: ``"package.module:function"``, or
    ``module:obj.attr``.  ``what`` says where the spec came from, in errors.

    The current directory is put on ``sys.path`` first, as ``python -m``
    does, so ``myapp:app`` finds ``./myapp.py``.  ValueError: not of that
    form; ImportError (one line, never the module's traceback): the module
    cannot be imported; AttributeError: it lacks the name; TypeError: that
    is not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} expects MODULE:CALLABLE, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise ImportError(f"{what} {spec}: cannot import {module_name}: SyntaxError: {exc.msg} "
                          f"({exc.filename}:{exc.lineno})", name=module_name) from exc
    except Exception as exc:  # whatever the module raised while running: one line, not a traceback
        raise ImportError(f"{what} {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}",
                          name=module_name) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{what} {spec}: {module_name} has no {attr}") from None
    if not callable(obj):
        raise TypeError(f"{what} {spec} is not callable")
    return obj
