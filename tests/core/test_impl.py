"""The compiled core is really used where it should be, and the switch to the
pure-Python fallback works exactly as documented in ``fastmux/_impl.py``."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastmux
import fastmux.http.protocol
from fastmux import _impl

COMPILED_PLATFORM = platform.python_implementation() == "CPython" and sys.platform.startswith("linux")
CORE_MODULES = ("_pollers_c", "_selectors_c", "_kernel_floor", "http._parser_c")
PACKAGE_DIR = Path(fastmux.__file__).resolve().parent

_PROBE = """
import json
import fastmux, fastmux._impl, fastmux._pollers, fastmux.selectors
print(json.dumps({
    "want": fastmux._impl.WANT_EXTENSIONS,
    "selectors": fastmux.selectors.IMPLEMENTATION,
    "pollers": fastmux._pollers.IMPLEMENTATION,
    "epoll_module": fastmux.selectors.EpollSelector.__module__,
    "info": fastmux.info(),
}))
"""


def _probe(value):
    """Import fastmux in a fresh interpreter with FASTMUX_NO_EXTENSIONS set to
    ``value`` (None: unset) and report what it chose."""
    env = dict(os.environ)
    env.pop("FASTMUX_NO_EXTENSIONS", None)
    if value is not None:
        env["FASTMUX_NO_EXTENSIONS"] = value
    # The same fastmux this process tests (a source tree or an installed wheel).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


def _compiled_modules_present() -> bool:
    return all(importlib.util.find_spec(f"fastmux.{name}") is not None for name in CORE_MODULES)


# -- the guard against a silent fallback ---------------------------------------


@pytest.mark.skipif(not _impl.WANT_EXTENSIONS, reason="the fallback is wanted here")
def test_compiled_core_is_loaded():
    """A build that should be compiled must not quietly run the slow path."""
    import fastmux._pollers
    import fastmux.selectors

    for name in CORE_MODULES:
        importlib.import_module(f"fastmux.{name}")  # an ImportError fails here, loudly
    assert fastmux.selectors.IMPLEMENTATION == "c"
    assert fastmux._pollers.IMPLEMENTATION == "c"
    assert fastmux.selectors.EpollSelector.__module__ == "fastmux._selectors_c"
    assert fastmux._pollers.Epoll.__module__ == "fastmux._pollers_c"
    assert fastmux.http.protocol.RequestParser.__module__ == "fastmux.http._parser_c"
    assert fastmux.info()["compiled"] is True


def test_want_extensions_matches_platform():
    forced = _impl.env_flag("FASTMUX_NO_EXTENSIONS")
    assert _impl.WANT_EXTENSIONS == (COMPILED_PLATFORM and not forced)


@pytest.mark.skipif(_impl.WANT_EXTENSIONS, reason="compiled build")
def test_fallback_is_the_python_twin():
    import fastmux._pollers
    import fastmux.selectors

    assert fastmux.selectors.IMPLEMENTATION == "py"
    assert fastmux._pollers.IMPLEMENTATION == "py"
    assert fastmux.selectors.EpollSelector.__module__ == "fastmux._selectors_py"
    assert fastmux.http.protocol.RequestParser.__module__.startswith("httptools")


def test_compiled_build_is_not_stale():
    """In an in-place build, each extension must be newer than its sources
    (its .pyx and every fastmux .pxd it cimports): tests of a stale .so test
    code that no longer exists.  Rebuild: python setup.py build_ext --inplace."""
    src = PACKAGE_DIR.parent / "src" / "fastmux"
    if not src.is_dir():
        pytest.skip("not an in-place build from a source tree")
    checked = 0
    for name in CORE_MODULES:
        path = name.replace(".", "/")
        built = list(PACKAGE_DIR.glob(f"{path}.*.so"))
        pyx = src / f"{path}.pyx"
        if not built or not pyx.exists():
            continue
        deps = [pyx] + _cimported_pxds(pyx, src.parent) + [p for p in [pyx.with_suffix(".pxd")] if p.exists()]
        newest = max(deps, key=lambda p: p.stat().st_mtime)
        for so in built:
            assert so.stat().st_mtime >= newest.stat().st_mtime, (
                f"{so.name} is older than {newest.relative_to(src.parent)}: "
                "run `python setup.py build_ext --inplace`"
            )
            checked += 1
    if not checked:
        pytest.skip("no in-place extension modules")


def _cimported_pxds(pyx: Path, root: Path):
    """The fastmux .pxd files named by ``from fastmux... cimport ...`` lines."""
    found = []
    for mod, names in re.findall(r"^\s*from\s+(fastmux[\w.]*)\s+cimport\s+(.+)$", pyx.read_text(), re.M):
        base = root.joinpath(*mod.split("."))
        if base.with_suffix(".pxd").exists():
            found.append(base.with_suffix(".pxd"))
        for name in re.findall(r"(\w+)(?:\s+as\s+\w+)?", names):
            if (base / f"{name}.pxd").exists():
                found.append(base / f"{name}.pxd")
    return found


# -- FASTMUX_NO_EXTENSIONS, in fresh interpreters ---------------------------------


# One interpreter per spelling is slow: the full table is test_env_flag_parsing.
@pytest.mark.parametrize("value", ["1", " Yes "])
def test_no_extensions_forces_fallback(value):
    got = _probe(value)
    assert got["want"] is False
    assert got["selectors"] == "py"
    assert got["pollers"] == "py"
    assert got["epoll_module"] == "fastmux._selectors_py"
    assert got["info"]["implementation"] == "py"
    assert got["info"]["compiled"] is False


@pytest.mark.skipif(not COMPILED_PLATFORM, reason="no extensions off Linux CPython")
@pytest.mark.parametrize("value", ["0", "", None], ids=["0", "empty", "unset"])
def test_other_values_do_not_disable(value):
    got = _probe(value)
    assert got["want"] is True, "only 1/true/yes/on may disable the extensions"
    if not _compiled_modules_present():
        # A pure-Python build (FASTMUX_NO_EXTENSIONS at build time): only the
        # parsing can be checked; test_compiled_core_is_loaded guards the rest.
        pytest.skip("the compiled modules are not built")
    assert got["selectors"] == "c"
    assert got["pollers"] == "c"
    assert got["info"]["compiled"] is True


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True), (" 1 ", True),
     ("0", False), ("", False), ("false", False), ("no", False), ("off", False), ("2", False)],
)
def test_env_flag_parsing(monkeypatch, value, expected):
    monkeypatch.setenv("FASTMUX_TEST_FLAG", value)
    assert _impl.env_flag("FASTMUX_TEST_FLAG") is expected


def test_env_flag_unset(monkeypatch):
    monkeypatch.delenv("FASTMUX_TEST_FLAG", raising=False)
    assert _impl.env_flag("FASTMUX_TEST_FLAG") is False


def test_load_picks_twin():
    for stem in ("pollers", "selectors"):
        mod = _impl.load(stem)
        expected = "c" if (_impl.WANT_EXTENSIONS and _compiled_modules_present()) else "py"
        assert mod.__name__ == f"fastmux._{stem}_{expected}"


# -- fastmux.info() ---------------------------------------------------------------


def test_info_fields():
    import fastmux._pollers
    import fastmux.selectors

    info = fastmux.info()
    assert set(info) >= {"version", "implementation", "compiled", "backends", "default_backend"}
    assert info["version"] == fastmux.__version__
    assert isinstance(info["version"], str) and info["version"]
    assert info["implementation"] == fastmux._pollers.IMPLEMENTATION
    assert info["implementation"] == fastmux.selectors.IMPLEMENTATION
    assert info["compiled"] is (info["implementation"] == "c")
    assert isinstance(info["backends"], list)
    assert info["backends"] == list(fastmux._pollers.BACKENDS)
    assert info["default_backend"] == fastmux.selectors.DefaultSelector.__name__
    if sys.platform.startswith("linux"):
        assert info["backends"] == ["epoll", "poll", "select"]
        assert info["default_backend"] == "EpollSelector"
    json.dumps(info)  # plain data, printable by `fastmux info`


def test_twins_export_the_same_names(impl):
    """Both twins offer the same public surface (constants equal too)."""
    import select

    py_pollers = importlib.import_module("fastmux._pollers_py")
    pollers = importlib.import_module(f"fastmux._pollers_{impl}")
    for name in ("Epoll", "Poll", "Select", "BACKENDS", "FD_SETSIZE"):
        assert hasattr(pollers, name), name
    flags = [n for n in dir(py_pollers) if n.startswith(("EPOLL", "POLL")) and n.isupper()]
    assert {"POLLIN", "POLLOUT", "POLLHUP", "EPOLLET", "EPOLLONESHOT", "EPOLLRDHUP"} <= set(flags)
    for name in flags:
        assert getattr(pollers, name) == getattr(py_pollers, name), name
        if hasattr(select, name):
            assert getattr(pollers, name) == getattr(select, name), name
    sels = importlib.import_module(f"fastmux._selectors_{impl}")
    for name in ("EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector", "EpollSelector",
                 "PollSelector", "SelectSelector", "DefaultSelector",
                 "EPOLLET", "EPOLLONESHOT", "EPOLLEXCLUSIVE", "EPOLLRDHUP"):
        assert hasattr(sels, name), name
    assert sels.DefaultSelector is sels.EpollSelector
