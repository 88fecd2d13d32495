"""Build script: cythonizes the compiled core at build time.

FASTMUX_NO_EXTENSIONS=1 (also 'true'/'yes') builds a pure-Python package; the
extensions are skipped automatically off Linux or off CPython, where the
fallback is used at run time anyway.  FASTMUX_DEBUG=1 builds with assertions,
line tracing and the FASTMUX_DEBUG macro; FASTMUX_ANNOTATE=1 writes Cython's
HTML annotation next to each .pyx.
"""
import os
import platform
import sys

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


CORE_MODULES = ["_pollers_c", "_selectors_c", "_kernel_floor"]


def _extensions():
    if _flag("FASTMUX_NO_EXTENSIONS"):
        return []
    if not sys.platform.startswith("linux") or platform.python_implementation() != "CPython":
        return []
    from Cython.Build import cythonize

    debug = _flag("FASTMUX_DEBUG")
    macros = [("FASTMUX_DEBUG", "1" if debug else "0")]
    cflags = []
    if debug:
        macros += [("CYTHON_TRACE_NOGIL", "1")]
        cflags = ["-O0", "-g", "-UNDEBUG"]
    exts = [
        Extension(
            f"fastmux.{name}",
            [f"src/fastmux/{name}.pyx"],
            define_macros=macros,
            extra_compile_args=cflags,
        )
        for name in CORE_MODULES
    ]
    return cythonize(
        exts,
        include_path=["src"],
        annotate=_flag("FASTMUX_ANNOTATE"),
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            "linetrace": debug,
        },
    )


setup(ext_modules=_extensions())
