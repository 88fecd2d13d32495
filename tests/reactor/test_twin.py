"""The compiled reactor twins are really used where they should be.

Eight reactor modules are compiled, unchanged, each into a twin typed by its
own .pxd (see ``fastmux.reactor`` and setup.py TWIN_MODULES).  Every other
test in this directory runs on both sets of twins through the ``loop``
fixture; these guard against a build that silently ships only the slow
ones, a compiled twin that Cython built without its declarations, and a
twin that uses a sibling of the other kind.
"""
from __future__ import annotations

import ast
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

# compiled twin -> (its pure twin, the classes its .pxd makes extension types)
TWINS = {
    "fastmux.reactor._loop_c": ("fastmux.reactor.loop", ["Reactor"]),
    "fastmux.reactor._fdwatch_c": ("fastmux.reactor._fdwatch", ["FdWatch"]),
    "fastmux.reactor._fdcallbacks_c": ("fastmux.reactor._fdcallbacks", ["FdCallbacks", "_FdEntry"]),
    "fastmux.reactor._transport_c": ("fastmux.reactor._transport", ["BaseTransport"]),
    "fastmux.reactor._stream_c": ("fastmux.reactor.stream", ["StreamTransport", "_EdgeStreamTransport"]),
    "fastmux.reactor._datagram_c": ("fastmux.reactor.datagram", ["DatagramTransport"]),
    "fastmux.reactor._aiocore_c": ("fastmux.reactor._aiocore", ["AsyncioCore"]),
    "fastmux.reactor._handles_c": ("fastmux.reactor.handles", ["Handle", "TimerHandle"]),
}
SETUP_PY = PACKAGE_DIR.parent / "setup.py"


def _compiled_twin_present(name: str = "fastmux.reactor._loop_c") -> bool:
    return importlib.util.find_spec(name) is not None


needs_compiled = pytest.mark.skipif(not _compiled_twin_present(), reason="the compiled twins are not built")


@pytest.mark.skipif(not SETUP_PY.exists(), reason="not a source tree")
def test_every_reactor_twin_is_checked_here():
    """setup.py builds exactly the twins listed in TWINS."""
    tree = ast.parse(SETUP_PY.read_text())
    built = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "TWIN_MODULES")
    reactor = {name: source for name, source in built.items() if name.startswith("fastmux.reactor.")}
    assert {name: source[:-3].replace("/", ".") for name, source in reactor.items()} == {
        name: pure for name, (pure, _) in TWINS.items()}


@pytest.mark.skipif(not _impl.WANT_EXTENSIONS, reason="the fallback is wanted here")
def test_compiled_reactor_is_loaded():
    """A build that should be compiled must not quietly run the pure-Python loop."""
    for name in TWINS:
        importlib.import_module(name)  # an ImportError fails here, loudly
    assert fastmux.reactor.IMPLEMENTATION == "c"
    assert fastmux.reactor.Reactor.__module__ == "fastmux.reactor._loop_c"
    assert fastmux.reactor.StreamTransport.__module__ == "fastmux.reactor._stream_c"
    assert fastmux.reactor.DatagramTransport.__module__ == "fastmux.reactor._datagram_c"


@needs_compiled
@pytest.mark.parametrize("name", list(TWINS))
def test_compiled_twin_has_its_declarations(name):
    """Cython found the twin's .pxd: its classes are extension types with C
    attributes, not the .py's classes merely compiled (which gains little);
    the pure twin's are untouched Python."""
    pure, classes = TWINS[name]
    mod = importlib.import_module(name)
    pure_mod = importlib.import_module(pure)
    for cls_name in classes:
        cls = getattr(mod, cls_name)
        assert not cls.__flags__ & HEAPTYPE, f"{cls_name} is not a cdef class"
        assert getattr(pure_mod, cls_name).__flags__ & HEAPTYPE
        slots = [a for a in getattr(pure_mod, cls_name).__dict__.get("__slots__", ()) if a != "__weakref__"]
        for attr in slots:
            assert isinstance(cls.__dict__[attr], types.GetSetDescriptorType), f"{cls_name}.{attr}"


@needs_compiled
def test_compiled_transports_share_the_compiled_base():
    base = importlib.import_module("fastmux.reactor._transport_c").BaseTransport
    stream = importlib.import_module("fastmux.reactor._stream_c")
    datagram = importlib.import_module("fastmux.reactor._datagram_c")
    assert stream.StreamTransport.__base__ is base
    assert stream._EdgeStreamTransport.__base__ is stream.StreamTransport
    assert datagram.DatagramTransport.__base__ is base
    assert not hasattr(stream, "EVENT_READ")  # a C constant there, for the hot path


def _reactor_parts(loop) -> dict:
    """The module of everything a reactor made from its siblings."""
    a, b = socket.socketpair()
    try:
        stream_t, _ = loop.create_connection(fastmux.reactor.Protocol, sock=a)
        dgram_t, _ = loop.create_datagram_endpoint(fastmux.reactor.DatagramProtocol, local_addr=("127.0.0.1", 0))
        parts = {
            "loop": type(loop).__module__,
            "fdwatch": type(loop._watch).__module__,
            "fdcallbacks": type(loop._fdcb).__module__,
            "stream": type(stream_t).__module__,
            "datagram": type(dgram_t).__module__,
        }
        stream_t.abort()
        dgram_t.abort()
        loop.run_until(lambda: False, timeout=0.01)
    finally:
        b.close()
    return parts


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_each_twin_uses_its_own_siblings(edge):
    """The compiled loop waits through the compiled FdWatch and makes compiled
    transports; the pure loop only pure ones, so the pure twins' tests cover them."""
    expected = {"py": {"loop": "fastmux.reactor.loop", "fdwatch": "fastmux.reactor._fdwatch",
                       "fdcallbacks": "fastmux.reactor._fdcallbacks", "stream": "fastmux.reactor.stream",
                       "datagram": "fastmux.reactor.datagram"}}
    expected["c"] = {key: f"fastmux.reactor._{mod.rsplit('.', 1)[1].lstrip('_')}_c"
                     for key, mod in expected["py"].items()}
    for impl in ("c", "py") if _compiled_twin_present() else ("py",):
        reactor_cls = importlib.import_module(expected[impl]["loop"]).Reactor
        try:
            loop = reactor_cls("epoll", edge=edge)
        except RuntimeError as exc:  # edge mode without selector flag support
            pytest.skip(str(exc))
        with loop:
            assert _reactor_parts(loop) == expected[impl]


def test_pure_twin_runs_without_cython():
    """The `if cython.compiled:` branches are false when the twins run as Python,
    whether `cython` is Cython's shadow module or the shim."""
    from fastmux.reactor import _cython_shim

    assert _cython_shim.compiled is False
    for pure, _ in TWINS.values():
        mod = importlib.import_module(pure)
        assert getattr(mod, "cython", _cython_shim).compiled is False, pure


@pytest.mark.parametrize("name", list(TWINS))
def test_compiled_twin_is_not_stale(name):
    """In an in-place build a twin must be newer than its .py, the reactor's
    .pxd files (they cimport each other) and the C declarations they cimport;
    rebuild with ``python setup.py build_ext --inplace``."""
    src = PACKAGE_DIR.parent / "src" / "fastmux"
    twin = name.rsplit(".", 1)[1]
    built = list((PACKAGE_DIR / "reactor").glob(f"{twin}.*.so"))
    if not src.is_dir() or not built:
        pytest.skip("not an in-place build from a source tree")
    source = PACKAGE_DIR / "reactor" / (TWINS[name][0].rsplit(".", 1)[1] + ".py")
    deps = [source, *src.glob("reactor/*.pxd"), *src.glob("includes/*.pxd")]
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
import json, fastmux.reactor as r
print(json.dumps([r.IMPLEMENTATION, r.Reactor.__module__, r.StreamTransport.__module__,
                  r.DatagramTransport.__module__]))
"""
COMPILED_PLATFORM = platform.python_implementation() == "CPython" and sys.platform.startswith("linux")


def _probe(value: str):
    """Which reactor twins a fresh interpreter picks with FASTMUX_NO_EXTENSIONS=value."""
    env = dict(os.environ, FASTMUX_NO_EXTENSIONS=value)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def test_no_extensions_forces_the_pure_reactor():
    assert _probe("1") == ["py", "fastmux.reactor.loop", "fastmux.reactor.stream", "fastmux.reactor.datagram"]


@pytest.mark.skipif(not (COMPILED_PLATFORM and _compiled_twin_present()), reason="no compiled twin here")
def test_zero_does_not_disable_the_compiled_reactor():
    assert _probe("0") == ["c", "fastmux.reactor._loop_c", "fastmux.reactor._stream_c",
                           "fastmux.reactor._datagram_c"]


@needs_compiled
@pytest.mark.parametrize("first", [n for n in TWINS if n != "fastmux.reactor._fdwatch_c"])
def test_compiled_twins_import_in_any_order(first):
    """_loop_c and _transport_c cimport each other's types: whichever compiled
    module an interpreter imports first, all of them finish importing.  (The
    fallback is forced so that importing fastmux.reactor imports none first.)"""
    code = f"import {first}, fastmux.reactor._loop_c as m; m.Reactor().close()"
    env = dict(os.environ, FASTMUX_NO_EXTENSIONS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)


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
