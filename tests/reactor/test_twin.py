"""The compiled reactor twin is really used where it should be.

``fastmux.reactor._loop_c`` is ``fastmux/reactor/loop.py`` compiled as it
is, typed by ``src/fastmux/reactor/_loop_c.pxd`` (see setup.py).  Every other
test in this directory runs on both twins through the ``loop`` fixture; these
guard against a build that silently ships only the slow one, or a compiled
twin that Cython built without its declarations.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fastmux
import fastmux.reactor
from fastmux import _impl
from fastmux.reactor import loop as pure_loop

PACKAGE_DIR = Path(fastmux.__file__).resolve().parent
HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes made by a class statement
TIMEOUT = 10.0


def _compiled_twin_present() -> bool:
    return importlib.util.find_spec("fastmux.reactor._loop_c") is not None


@pytest.mark.skipif(not _impl.WANT_EXTENSIONS, reason="the fallback is wanted here")
def test_compiled_reactor_is_loaded():
    """A build that should be compiled must not quietly run the pure-Python loop."""
    importlib.import_module("fastmux.reactor._loop_c")  # an ImportError fails here, loudly
    assert fastmux.reactor.IMPLEMENTATION == "c"
    assert fastmux.reactor.Reactor.__module__ == "fastmux.reactor._loop_c"
    assert fastmux.reactor.StreamTransport.__module__ == "fastmux.reactor._loop_c"


@pytest.mark.skipif(not _compiled_twin_present(), reason="the compiled twin is not built")
def test_compiled_twin_has_its_declarations():
    """Cython found _loop_c.pxd: the hot classes are extension types with C
    attributes, not the .py's classes merely compiled (which gains little)."""
    mod = importlib.import_module("fastmux.reactor._loop_c")
    for name in ("Reactor", "StreamTransport", "_EdgeStreamTransport"):
        cls = getattr(mod, name)
        assert not cls.__flags__ & HEAPTYPE, f"{name} is not a cdef class"
    assert isinstance(mod.StreamTransport.__dict__["_fd"], types.GetSetDescriptorType)
    assert isinstance(mod.Reactor.__dict__["_edge"], types.GetSetDescriptorType)
    assert not hasattr(mod, "EVENT_READ")  # a C constant there
    # the pure twin is untouched Python
    assert pure_loop.Reactor.__flags__ & HEAPTYPE
    assert isinstance(pure_loop.StreamTransport.__dict__["_fd"], types.MemberDescriptorType)


@pytest.mark.skipif(not _compiled_twin_present(), reason="the compiled twin is not built")
def test_each_loop_twin_waits_through_its_fdwatch_twin():
    """_loop_c uses _fdwatch_c (an extension type, typed by _fdwatch_c.pxd);
    loop.py uses _fdwatch.py, so the pure loop's tests cover the pure FdWatch."""
    mod = importlib.import_module("fastmux.reactor._loop_c")
    with mod.Reactor() as loop:
        watch_cls = type(loop._watch)
    assert watch_cls.__module__ == "fastmux.reactor._fdwatch_c"
    assert not watch_cls.__flags__ & HEAPTYPE
    assert isinstance(watch_cls.__dict__["_spurious"], types.GetSetDescriptorType)
    with pure_loop.Reactor() as loop:
        assert type(loop._watch).__module__ == "fastmux.reactor._fdwatch"


def test_pure_twin_runs_without_cython():
    """loop.py's `if cython.compiled:` branches are false when it runs as Python,
    whether `cython` is Cython's shadow module or the shim."""
    from fastmux.reactor import _cython_shim

    assert _cython_shim.compiled is False
    assert pure_loop.cython.compiled is False


@pytest.mark.parametrize("twin, source", [("_loop_c", "loop.py"), ("_fdwatch_c", "_fdwatch.py")])
def test_compiled_twin_is_not_stale(twin, source):
    """In an in-place build a twin must be newer than its .py, its .pxd and
    the C declarations that .pxd cimports; rebuild with
    ``python setup.py build_ext --inplace``."""
    src = PACKAGE_DIR.parent / "src" / "fastmux"
    built = list((PACKAGE_DIR / "reactor").glob(f"{twin}.*.so"))
    if not src.is_dir() or not built:
        pytest.skip("not an in-place build from a source tree")
    deps = [PACKAGE_DIR / "reactor" / source, src / "reactor" / f"{twin}.pxd", *src.glob("includes/*.pxd")]
    newest = max(deps, key=lambda p: p.stat().st_mtime)
    for so in built:
        assert so.stat().st_mtime >= newest.stat().st_mtime, (
            f"{so.name} is older than {newest}: run `python setup.py build_ext --inplace`")


def test_load_twin():
    mod = _impl.load_twin("fastmux.reactor._loop_c", "fastmux.reactor.loop")
    expected = "fastmux.reactor._loop_c" if _impl.WANT_EXTENSIONS and _compiled_twin_present() \
        else "fastmux.reactor.loop"
    assert mod.__name__ == expected
    assert fastmux.reactor.Reactor is mod.Reactor


def test_load_twin_falls_back_when_missing():
    assert _impl.load_twin("fastmux.reactor._no_such_twin", "fastmux.reactor.loop") is pure_loop


_PROBE = """
import json, fastmux.reactor
print(json.dumps([fastmux.reactor.IMPLEMENTATION, fastmux.reactor.Reactor.__module__]))
"""
COMPILED_PLATFORM = platform.python_implementation() == "CPython" and sys.platform.startswith("linux")


def _probe(value: str):
    """Which reactor twin a fresh interpreter picks with FASTMUX_NO_EXTENSIONS=value."""
    env = dict(os.environ, FASTMUX_NO_EXTENSIONS=value)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def test_no_extensions_forces_the_pure_reactor():
    assert _probe("1") == ["py", "fastmux.reactor.loop"]


@pytest.mark.skipif(not (COMPILED_PLATFORM and _compiled_twin_present()), reason="no compiled twin here")
def test_zero_does_not_disable_the_compiled_reactor():
    assert _probe("0") == ["c", "fastmux.reactor._loop_c"]


# -- behaviour the compiled twin implements on its own (the socket I/O) ---------


class _Collect:
    def __init__(self):
        self.transport = None
        self.data = bytearray()
        self.eof = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data

    def eof_received(self):
        self.eof = True
        return True

    def connection_lost(self, exc):
        pass


@pytest.mark.parametrize("max_read", [1, 1000, 64 * 1024, 300 * 1000], ids=lambda n: f"read{n}")
def test_reads_of_every_size(loop, socketpair, max_read):
    """recv sizes below, at and above the compiled twin's shared 64 KiB buffer."""
    a, b = socketpair()
    p = _Collect()
    loop.create_connection(lambda: p, sock=a)
    assert loop.run_until(lambda: p.transport is not None, timeout=TIMEOUT)
    p.transport.max_read_size = max_read
    payload = bytes(range(256)) * (3000 if max_read > 1 else 20)
    b.setblocking(True)
    b.settimeout(TIMEOUT)

    sent = 0
    while sent < len(payload):  # the socket buffer may be smaller than the payload
        b.setblocking(False)
        try:
            sent += b.send(payload[sent:sent + 65536])
        except BlockingIOError:
            pass
        loop.run_until(lambda: False, timeout=0.001)
    b.shutdown(socket.SHUT_WR)
    assert loop.run_until(lambda: p.eof, timeout=TIMEOUT)
    assert p.data == payload
    p.transport.abort()
