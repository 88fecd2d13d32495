"""The compiled HTTP twins are really used where they should be.

``fastmux.http._protocol_c`` is ``fastmux/http/protocol.py`` compiled as it
is, typed by ``src/fastmux/http/_protocol_c.pxd``; ``fastmux.http._parser_c``
is llhttp driven from C.  The other HTTP unit tests run on every pair of
twins (conftest.http_twins); these guard against a build that silently ships
only the slow ones, or a protocol twin Cython built without its declarations.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fastmux
import fastmux.http
from fastmux import _impl
from fastmux.http import protocol as pure_protocol

PACKAGE_DIR = Path(fastmux.__file__).resolve().parent
HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes made by a class statement


def _built(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.mark.skipif(not _impl.WANT_EXTENSIONS, reason="the fallback is wanted here")
def test_compiled_http_twins_are_loaded():
    importlib.import_module("fastmux.http._protocol_c")  # an ImportError fails here, loudly
    importlib.import_module("fastmux.http._parser_c")
    assert fastmux.http.IMPLEMENTATION == "c"
    assert fastmux.http.HttpServer.__module__ == "fastmux.http._protocol_c"
    assert fastmux.http.HttpServer(None).parser.__module__ == "fastmux.http._parser_c"
    # request.py, response.py and app.py compiled as they are, used by the protocol
    for name in ("_request_c", "_response_c", "_app_c"):
        importlib.import_module(f"fastmux.http.{name}")
    assert fastmux.http.Request.__module__ == "fastmux.http._request_c"
    assert fastmux.http.render.__module__ == "fastmux.http._app_c"
    assert pure_protocol.render is fastmux.http.render
    assert pure_protocol.new_request is importlib.import_module("fastmux.http._request_c").new_request


@pytest.mark.skipif(_impl.WANT_EXTENSIONS, reason="compiled build")
def test_fallback_is_pure_python_on_httptools():
    assert fastmux.http.IMPLEMENTATION == "py"
    assert fastmux.http.HttpServer is pure_protocol.HttpServer
    assert fastmux.http.HttpServer(None).parser.__module__.startswith("httptools")


@pytest.mark.skipif(not _built("fastmux.http._protocol_c"), reason="the compiled twin is not built")
def test_compiled_protocol_has_its_declarations():
    """Cython found _protocol_c.pxd: HttpProtocol is an extension type with
    C attributes, not the .py's class merely compiled."""
    mod = importlib.import_module("fastmux.http._protocol_c")
    assert not mod.HttpProtocol.__flags__ & HEAPTYPE
    assert isinstance(mod.HttpProtocol.__dict__["_fast"], types.GetSetDescriptorType)
    assert pure_protocol.HttpProtocol.__flags__ & HEAPTYPE
    # the Request it builds (in C: _protocol_c.pxd cimports _request_c.pxd)
    request = importlib.import_module("fastmux.http._request_c").Request
    assert not request.__flags__ & HEAPTYPE
    assert isinstance(request.__dict__["keep_alive"], types.GetSetDescriptorType)
    assert isinstance(pure_protocol.HttpProtocol.__dict__["_fast"], types.MemberDescriptorType)


def test_compiled_protocol_is_not_stale():
    """In an in-place build the twin must be newer than protocol.py and its
    .pxd; rebuild with ``python setup.py build_ext --inplace``."""
    src = PACKAGE_DIR.parent / "src" / "fastmux"
    built = list((PACKAGE_DIR / "http").glob("_protocol_c.*.so"))
    if not src.is_dir() or not built:
        pytest.skip("not an in-place build from a source tree")
    deps = [PACKAGE_DIR / "http" / "protocol.py"] + list((src / "http").glob("*.pxd"))
    newest = max(deps, key=lambda p: p.stat().st_mtime)
    for so in built:
        assert so.stat().st_mtime >= newest.stat().st_mtime, (
            f"{so.name} is older than {newest}: run `python setup.py build_ext --inplace`")
    for twin, source in (("_request_c", "request.py"), ("_response_c", "response.py"), ("_app_c", "app.py")):
        for so in (PACKAGE_DIR / "http").glob(f"{twin}.*.so"):
            assert so.stat().st_mtime >= (PACKAGE_DIR / "http" / source).stat().st_mtime, (
                f"{so.name} is older than {source}: run `python setup.py build_ext --inplace`")


_WITHOUT_HTTPTOOLS = """
import sys
sys.modules["httptools"] = None  # any import of httptools now fails
import fastmux.http
from fastmux.http.errors import HttpParserError
assert fastmux.http.IMPLEMENTATION == "c", fastmux.http.IMPLEMENTATION
assert HttpParserError.__module__ == "fastmux.http.errors", HttpParserError.__module__
parser = fastmux.http.HttpServer(None).parser(object())  # the parser class, given callbacks
try:
    parser.feed_data(b"NOT HTTP\\r\\n\\r\\n")
except HttpParserError as exc:
    print("refused:", exc)
"""


@pytest.mark.skipif(not (_impl.WANT_EXTENSIONS and _built("fastmux.http._parser_c")), reason="no compiled build")
def test_compiled_http_runs_without_httptools():
    """httptools is the fallback's parser; the compiled twins import nothing of it."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    out = subprocess.run([sys.executable, "-c", _WITHOUT_HTTPTOOLS], env=env, cwd=str(PACKAGE_DIR.parent),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:"), out.stdout
