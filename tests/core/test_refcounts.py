"""The selectors do not leak: long register/modify/select/unregister loops
keep reference counts, the number of live objects and memory flat.  The
compiled path builds its keys by hand (``new_key`` in ``_selectors_c.pyx``),
which is where a missing or extra reference would hide; the pure-Python twin
runs the same loop, shorter."""
from __future__ import annotations

import gc
import os
import sys

import pytest

READ = 1
WRITE = 2
MIB = 1024 * 1024

# Cycles per implementation: long enough that a leak of one object or a
# few bytes per cycle stands out from the noise, short enough to stay fast.
CYCLES = {"c": 200_000, "py": 10_000}


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    pytest.skip(f"no {field} in /proc/self/status")


class Payload:
    """User data attached to a key: a plain object whose refcount we watch."""


def _cycle(sel, sock, data, other):
    key = sel.register(sock, READ, data)
    key = sel.modify(sock, READ | WRITE, other)  # events and data: a new key
    sel.modify(sock, READ | WRITE, other)  # unchanged: the same key back
    got = sel.select(0)
    assert got[0][0] is key
    sel.unregister(sock)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_register_select_unregister_does_not_leak(selector_cls, impl_backend, pair):
    impl, _ = impl_backend
    cycles = CYCLES[impl]
    sock, _ = pair
    data, other = Payload(), Payload()
    with selector_cls() as sel:
        for _ in range(1000):  # warm up: caches, free lists, buffers
            _cycle(sel, sock, data, other)
        gc.collect()
        refs = (sys.getrefcount(sock), sys.getrefcount(data), sys.getrefcount(other))
        objects = len(gc.get_objects())
        rss = _status_kib("VmRSS")
        for _ in range(cycles):
            _cycle(sel, sock, data, other)
        gc.collect()
        assert (sys.getrefcount(sock), sys.getrefcount(data), sys.getrefcount(other)) == refs
        assert abs(len(gc.get_objects()) - objects) < 1000
        grown = (_status_kib("VmRSS") - rss) * 1024
        assert grown < 4 * MIB, f"RSS grew {grown / MIB:.1f} MiB in {cycles} cycles"
    gc.collect()
    assert sys.getrefcount(data) == refs[1]  # close() kept nothing


def test_keys_hold_their_references(selector_cls, impl_backend, pair):
    sock, peer = pair
    data = Payload()
    before = (sys.getrefcount(sock), sys.getrefcount(data))
    with selector_cls() as sel:
        key = sel.register(sock, READ, data)
        # the key's reference, and the compiled selector's list of data by fd
        assert sys.getrefcount(data) == before[1] + (2 if impl_backend[0] == "c" else 1)
        key_refs = sys.getrefcount(key)
        peer.send(b"x")
        for _ in range(100):
            got = sel.select(0)
            assert got[0][0] is key
        del got
        # The compiled selector reuses one (key, events) pair per fd and
        # readiness: at most one more reference, not one per select().
        assert sys.getrefcount(key) <= key_refs + 1
        sel.unregister(sock)
        assert sys.getrefcount(key) == key_refs - 1  # the selector's own reference is gone too
        del key
    gc.collect()
    assert (sys.getrefcount(sock), sys.getrefcount(data)) == before


def test_dropped_selector_releases_everything(selector_cls, pair):
    sock, _ = pair
    data = Payload()
    before = (sys.getrefcount(sock), sys.getrefcount(data))
    sel = selector_cls()
    sel.register(sock, READ, data)
    sel.close()
    del sel
    gc.collect()
    assert (sys.getrefcount(sock), sys.getrefcount(data)) == before


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="needs os.eventfd")
def test_unregister_after_close_does_not_grow_memory(epoll_selector_cls):
    """Closing an fd before unregistering it is allowed (the kernel already
    dropped it).  Doing so again and again must not grow anything: the
    poller's count of registrations sizes the buffer every wait reserves."""
    impl = "c" if epoll_selector_cls.__module__.endswith("_c") else "py"
    cycles = CYCLES[impl] // 2
    with epoll_selector_cls() as sel:
        def cycle():
            fd = os.eventfd(0)
            try:
                sel.register(fd, READ)
            finally:
                os.close(fd)
            sel.unregister(fd)
            assert sel.select(0) == []

        for _ in range(1000):
            cycle()
        data = _status_kib("VmData")
        for _ in range(cycles):
            cycle()
        grown = (_status_kib("VmData") - data) * 1024
    assert grown < MIB // 2, f"VmData grew {grown / MIB:.1f} MiB in {cycles} cycles"


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_selector_dropped_without_close(selector_cls, pair):
    """Garbage collection alone releases the keys' references and the
    kernel object (an epoll fd), even through the selector <-> map cycle."""
    sock, _ = pair
    data = Payload()
    gc.collect()
    before = (sys.getrefcount(sock), sys.getrefcount(data), _open_fds())
    for _ in range(50):
        sel = selector_cls()
        sel.register(sock, READ, data)
        sel.get_map()
        del sel
    gc.collect()
    assert (sys.getrefcount(sock), sys.getrefcount(data), _open_fds()) == before


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="needs os.eventfd")
def test_epoll_poller_close_without_unregister_does_not_grow_memory(pollers):
    """With a raw Epoll, closing a registered fd without unregistering it is
    ordinary epoll usage (the kernel drops the registration).  The fd number
    is reused by the next registration, so nothing may accumulate."""
    cycles = CYCLES["c" if pollers.__name__.endswith("_c") else "py"] // 2
    with pollers.Epoll() as ep:
        def cycle():
            fd = os.eventfd(0)
            try:
                ep.register(fd, pollers.POLLIN)
            finally:
                os.close(fd)
            assert ep.poll(0) == []

        for _ in range(1000):
            cycle()
        data = _status_kib("VmData")
        for _ in range(cycles):
            cycle()
        grown = (_status_kib("VmData") - data) * 1024
    assert grown < MIB // 2, f"VmData grew {grown / MIB:.1f} MiB in {cycles} cycles"
