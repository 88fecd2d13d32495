"""Build script: cythonizes the compiled core at build time.

FASTMUX_NO_EXTENSIONS=1 (also 'true'/'yes') builds a pure-Python package; the
extensions are skipped automatically off Linux or off CPython, where the
fallback is used at run time anyway.  FASTMUX_DEBUG=1 builds with assertions,
line tracing and the FASTMUX_DEBUG macro; FASTMUX_ANNOTATE=1 writes Cython's
HTML annotation next to each .pyx (and next to each twin's .py).
"""
import glob
import os
import platform
import sys

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


CORE_MODULES = ["_pollers_c", "_selectors_c", "_kernel_floor", "http._parser_c"]

# C sources compiled into a core module besides its .pyx, and their headers.
LLHTTP = "src/fastmux/vendor/llhttp"
VENDORED = {
    "http._parser_c": ([f"{LLHTTP}/{c}" for c in ("llhttp.c", "api.c", "http.c")], [LLHTTP]),
}

# Pure-Python modules that are also compiled, unchanged, into a twin extension
# (extension name -> the .py it is compiled from).  The .py stays the one
# source and the pure-Python fallback; Cython types its hot classes from an
# augmenting .pxd that it finds by the *extension's* qualified name, e.g.
# src/fastmux/reactor/_loop_c.pxd (src/ is on the include path; Cython 3
# needs no __init__.pxd in src/fastmux/reactor for the lookup).  Every one
# has its .pxd.  fastmux/reactor/__init__.py says how the twins pick their
# siblings; fastmux._impl.load_twin() picks the compiled ones at run time.
TWIN_MODULES = {
    "fastmux.reactor._loop_c": "fastmux/reactor/loop.py",
    "fastmux.reactor._fdwatch_c": "fastmux/reactor/_fdwatch.py",
    "fastmux.reactor._fdcallbacks_c": "fastmux/reactor/_fdcallbacks.py",
    "fastmux.reactor._transport_c": "fastmux/reactor/_transport.py",
    "fastmux.reactor._stream_c": "fastmux/reactor/stream.py",
    "fastmux.reactor._datagram_c": "fastmux/reactor/datagram.py",
    "fastmux.reactor._aiocore_c": "fastmux/reactor/_aiocore.py",
    "fastmux.reactor._handles_c": "fastmux/reactor/handles.py",
    "fastmux.http._protocol_c": "fastmux/http/protocol.py",
    "fastmux.http._request_c": "fastmux/http/request.py",
    "fastmux.http._response_c": "fastmux/http/response.py",
    "fastmux.http._app_c": "fastmux/http/app.py",
}


def _drop_stale_twin_c_files() -> None:
    """cythonize decides what to regenerate from a source's own dependencies,
    which for loop.py would be a loop.pxd beside it: it never looks at the
    augmenting .pxd found by the extension's name.  So when any .pxd or .h
    under src/fastmux (that .pxd, or one it cimports: the reactor's twins
    cimport each other's) is newer than a twin's generated .c, remove the .c
    and cythonize makes it again."""
    deps = glob.glob("src/fastmux/**/*.pxd", recursive=True) + glob.glob("src/fastmux/includes/*.h")
    newest = max(os.path.getmtime(d) for d in deps)
    for source in TWIN_MODULES.values():
        c_file = os.path.splitext(source)[0] + ".c"
        if os.path.exists(c_file) and newest > os.path.getmtime(c_file):
            os.remove(c_file)


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
            [f"src/fastmux/{name.replace('.', '/')}.pyx"] + VENDORED.get(name, ([], []))[0],
            include_dirs=VENDORED.get(name, ([], []))[1],
            define_macros=macros,
            extra_compile_args=cflags,
        )
        for name in CORE_MODULES
    ]
    directives = {
        "language_level": 3,
        "embedsignature": True,
        "linetrace": debug,
    }
    twins = [
        # llhttp.h: _protocol_c.pxd cimports the compiled parser's declarations
        Extension(name, [source], include_dirs=[LLHTTP], define_macros=macros, extra_compile_args=cflags)
        for name, source in TWIN_MODULES.items()
    ]
    twin_directives = dict(
        directives,
        # The .py's annotations are for type checkers; the C types come from
        # the .pxd only, so both twins accept exactly the same arguments.
        annotation_typing=False,
        # `if cython.compiled: ... else: <pure-Python path>` is intended.
        **{"warn.unreachable": False},
    )
    annotate = _flag("FASTMUX_ANNOTATE")
    _drop_stale_twin_c_files()
    jobs = os.cpu_count() or 1  # CI builds one wheel per Python: use every core for each
    return cythonize(exts, include_path=["src"], annotate=annotate, compiler_directives=directives,
                     nthreads=jobs) + cythonize(
        twins, include_path=["src"], annotate=annotate, compiler_directives=twin_directives, nthreads=jobs
    )


setup(ext_modules=_extensions(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
