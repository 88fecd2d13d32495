"""Memory safety of the compiled core.

Three kinds of check, all against the compiled modules only (the pure-Python
twins cannot corrupt memory; ``tests/core/test_refcounts.py`` runs them too):

* **Leak counters** (debug builds only, ``FASTMUX_DEBUG=1``; skipped with a
  reason elsewhere): ``_pollers_c._debug_counters()`` and
  ``_selectors_c._debug_counters()`` count C buffers allocated and freed,
  extension objects created and freed and epoll descriptors opened and closed
  (``src/fastmux/includes/debug.h``).  After creating, using, closing and
  dropping many pollers and selectors every live balance is back to where it
  started.
* **Soak loops** (``@pytest.mark.soak``): register/select/unregister cycles on
  the selectors and register/poll/unregister on the pollers keep the
  reference counts of the file object and the data, the number of
  GC-tracked objects and the RSS flat.  Sized by ``FASTMUX_SOAK_SCALE``:
  1.0, the default, is a million EpollSelector cycles (3-10 s on a 2-core
  box; the whole file about 10-20 s) and 100k of each error.
* **Error paths**: refused registrations (a regular file on epoll, closed
  descriptors, the selectors' API errors), a select() that raises, re-entrant
  use from a GC callback and ``_kernel_floor``'s argument errors leak nothing.

``tools/valgrind-core.sh`` runs this file under valgrind memcheck on a debug
build, with a small ``FASTMUX_SOAK_SCALE``; the RSS checks are skipped there
(valgrind's own bookkeeping dominates the process's RSS).
"""
from __future__ import annotations

import errno
import gc
import os
import resource
import select
import socket
import sys
import warnings

import pytest

from fastmux._impl import WANT_EXTENSIONS

_pollers_c = _selectors_c = _kernel_floor = None
if WANT_EXTENSIONS:
    try:
        from fastmux import _kernel_floor, _pollers_c, _selectors_c
    except ImportError:
        pass  # tests/core/test_impl.py fails a build that should have them
if _pollers_c is None:
    pytest.skip("the compiled core is not loaded (FASTMUX_NO_EXTENSIONS, or not built)",
                allow_module_level=True)

MIB = 1024 * 1024
READ, WRITE = 1, 2
POLLIN = select.POLLIN

DEFAULT_SOAK_SCALE = 1.0
SOAK_SCALE = float(os.environ.get("FASTMUX_SOAK_SCALE", "") or DEFAULT_SOAK_SCALE)
UNDER_VALGRIND = "vgpreload" in os.environ.get("LD_PRELOAD", "")
DEBUG_BUILD = bool(_pollers_c._debug_counters())

needs_debug_build = pytest.mark.skipif(
    not DEBUG_BUILD,
    reason="leak counters exist only in a debug build (FASTMUX_DEBUG=1 python setup.py build_ext --inplace)",
)

POLLER_CLASSES = {"epoll": _pollers_c.Epoll, "poll": _pollers_c.Poll, "select": _pollers_c.Select}
SELECTOR_CLASSES = {
    "epoll": _selectors_c.EpollSelector,
    "poll": _selectors_c.PollSelector,
    "select": _selectors_c.SelectSelector,
}
BACKENDS = tuple(POLLER_CLASSES)


def cycles(at_scale_one: int, minimum: int = 200) -> int:
    """A loop count: ``at_scale_one`` times FASTMUX_SOAK_SCALE, at least ``minimum``."""
    return max(minimum, int(at_scale_one * SOAK_SCALE))


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def live_counters():
    """The live balances of both modules' debug counters ({} in release builds)."""
    out = {}
    for name, mod in (("pollers", _pollers_c), ("selectors", _selectors_c)):
        for key, value in mod._debug_counters().items():
            if key.endswith(("_live", "_open")):
                out[f"{name}.{key}"] = value
    return out


class Payload:
    """User data attached to a registration: an object whose refcount we watch."""


class Baseline:
    """What must come back after a loop: the reference counts of ``watched``,
    the number of GC-tracked objects, the debug counters' live balances,
    ``sys.gettotalrefcount()`` (debug CPython only) and the RSS."""

    def __init__(self, *watched):
        self.watched = watched

    def start(self) -> "Baseline":
        # Not in __init__: while it runs, the caller's call still holds
        # references to the arguments, which check() would not see.
        gc.collect()
        self.refs = [sys.getrefcount(o) for o in self.watched]
        self.objects = len(gc.get_objects())
        self.counters = live_counters()
        self.total_refs = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
        self.rss_kib = proc_status_kib("VmRSS")
        self.data_kib = proc_status_kib("VmData")
        return self

    def check(self, n: int, *, rss_limit: int = 2 * MIB) -> dict:
        gc.collect()
        refs = [sys.getrefcount(o) for o in self.watched]
        assert refs == self.refs, f"reference counts {self.refs} -> {refs} after {n} cycles"
        objects = len(gc.get_objects())
        assert abs(objects - self.objects) < 200, f"GC-tracked objects {self.objects} -> {objects}"
        assert live_counters() == self.counters
        if self.total_refs is not None:
            grown = sys.gettotalrefcount() - self.total_refs
            assert abs(grown) < 1000, f"sys.gettotalrefcount() grew by {grown} in {n} cycles"
        rss = (proc_status_kib("VmRSS") - self.rss_kib) * 1024
        data = (proc_status_kib("VmData") - self.data_kib) * 1024
        if not UNDER_VALGRIND:
            assert rss < rss_limit, f"RSS grew {rss / MIB:.2f} MiB in {n} cycles"
            # VmData also sees buffers that grow without being touched
            assert data < 2 * rss_limit, f"VmData grew {data / MIB:.2f} MiB in {n} cycles"
        return {"cycles": n, "rss_growth_kib": rss // 1024, "vmdata_growth_kib": data // 1024,
                "gc_objects_delta": objects - self.objects}


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def regular_file(tmp_path):
    with open(tmp_path / "plain", "w") as f:
        yield f


def closed_fd() -> int:
    """A descriptor number that is not open.  Take it after opening
    everything else: the next descriptor opened would reuse it."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


@pytest.fixture
def high_fd(pair):
    """``pair[0]`` duplicated onto a high descriptor number, so that the
    pollers and selectors have to grow their fd-indexed buffers."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= 800:
        pytest.skip(f"RLIMIT_NOFILE {soft} too low for an fd near 700")
    for target in range(700, 800):
        try:
            os.fstat(target)
        except OSError:
            break  # not open: dup2() replaces nothing
    else:
        pytest.skip("no free descriptor number in 700..799")
    fd = os.dup2(pair[0].fileno(), target, inheritable=False)
    yield fd
    os.close(fd)


# -- the debug counters --------------------------------------------------------------


def test_debug_counters_exist_in_every_build():
    for mod in (_pollers_c, _selectors_c):
        got = mod._debug_counters()
        assert isinstance(got, dict)
        if not DEBUG_BUILD:
            assert got == {}, "release builds compile the counters out"
            continue
        assert set(got) >= {"buffers_allocated", "buffers_freed", "buffers_live",
                            "objects_created", "objects_freed", "objects_live",
                            "fds_opened", "fds_closed", "fds_open"}
        assert all(v >= 0 for v in got.values()), got


def _use_poller(p, backend, socks, high_fd):
    for i, (a, _) in enumerate(socks):
        p.register(a, POLLIN)
    if backend != "select":  # select() cannot watch fds this high
        p.register(high_fd, POLLIN)
    socks[0][1].send(b"x")
    assert p.poll(0)
    p.modify(socks[1][0], POLLIN | select.POLLOUT)
    p.unregister(socks[2][0])
    p.poll(0, maxevents=1)


@needs_debug_build
@pytest.mark.parametrize("backend", BACKENDS)
def test_pollers_return_counters_to_baseline(backend, high_fd):
    cls = POLLER_CLASSES[backend]
    socks = [socket.socketpair() for _ in range(20)]
    try:
        baseline = Baseline().start()  # collects earlier tests' garbage first
        before = _pollers_c._debug_counters()
        n = 300
        for i in range(n):
            p = cls()
            _use_poller(p, backend, socks, high_fd)
            if i % 3 == 0:
                p.close()
                p.close()  # twice: still one close counted
            elif i % 3 == 1:
                with p:
                    p.poll(0)
            # else: dropped open, which must release everything too
            del p
            socks[0][0].recv(1)
        baseline.check(n)
        after = _pollers_c._debug_counters()
        assert after["objects_created"] - before["objects_created"] == n
        assert after["objects_freed"] - before["objects_freed"] == n
        assert after["buffers_allocated"] > before["buffers_allocated"]
        if backend == "epoll":
            assert after["fds_opened"] - before["fds_opened"] == n
    finally:
        for a, b in socks:
            a.close()
            b.close()


@needs_debug_build
@pytest.mark.parametrize("backend", BACKENDS)
def test_selectors_return_counters_to_baseline(backend, high_fd):
    cls = SELECTOR_CLASSES[backend]
    socks = [socket.socketpair() for _ in range(20)]
    data = Payload()
    try:
        baseline = Baseline(data, *[a for a, _ in socks]).start()
        before = _selectors_c._debug_counters()
        n = 300
        for i in range(n):
            sel = cls()
            for ends in socks:  # (not `for a, _`: a loop variable would hold a socket)
                sel.register(ends[0], READ, data)
            if backend != "select":
                sel.register(high_fd, READ, data)
            socks[0][1].send(b"x")
            assert sel.select(0)
            sel.modify(socks[1][0], READ | WRITE, data)
            sel.unregister(socks[2][0])
            if i % 3 == 0:
                sel.close()
            elif i % 3 == 1:
                with sel:
                    sel.select(0)
            # else: dropped with its registrations; its key map refers back to
            # it, so only the cycle collector (Baseline.check) frees it
            del sel
            socks[0][0].recv(1)
        baseline.check(n)
        after = _selectors_c._debug_counters()
        assert after["objects_created"] - before["objects_created"] == n
        assert after["objects_freed"] - before["objects_freed"] == n
        assert after["buffers_freed"] - before["buffers_freed"] == n
    finally:
        for a, b in socks:
            a.close()
            b.close()


@needs_debug_build
def test_failed_construction_releases_everything():
    """epoll_create1() failing (EMFILE) inside Epoll() and EpollSelector():
    the half-made objects are freed and own no descriptor."""
    baseline = Baseline().start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    filler = list(os.pipe())
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
        try:
            while True:
                filler.append(os.dup(filler[0]))
        except OSError as e:
            assert e.errno == errno.EMFILE
        for _ in range(200):
            with pytest.raises(OSError) as info:
                _pollers_c.Epoll()
            assert info.value.errno == errno.EMFILE
            with pytest.raises(OSError):
                _selectors_c.EpollSelector()
        del info
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    baseline.check(200)


@needs_debug_build
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_swaps_the_epoll_instance_without_leaking(pair):
    """A forked child's first use of an EpollSelector replaces the inherited
    epoll instance: the old one is closed and freed, not leaked."""
    a, b = pair
    gc.collect()
    base = live_counters()
    sel = _selectors_c.EpollSelector()
    sel.register(a, READ)
    b.send(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            gc.collect()  # earlier tests' garbage must not be freed mid-check
            before = live_counters()
            opened = _pollers_c._debug_counters()["fds_opened"]
            ready = sel.select(0)  # swaps the instance
            assert [k.fileobj for k, _ in ready] == [a]
            assert _pollers_c._debug_counters()["fds_opened"] == opened + 1
            gc.collect()
            now = live_counters()
            # the old instance is closed and freed: one epoll fd, one poller
            assert now["pollers.fds_open"] == before["pollers.fds_open"], (now, before)
            assert now["pollers.objects_live"] == before["pollers.objects_live"], (now, before)
            sel.close()
            del sel, ready
            gc.collect()
            assert live_counters() == base, (live_counters(), base)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [k.fileobj for k, _ in sel.select(0)] == [a]  # the parent's is untouched
    sel.close()


# -- soak: refcounts, objects and RSS stay flat --------------------------------------


def _selector_cycles(sel, sock, data, n):
    register, select_, unregister = sel.register, sel.select, sel.unregister
    for _ in range(n):
        key = register(sock, READ, data)
        got = select_(0)
        assert got[0][0] is key
        unregister(sock)


@pytest.mark.soak
def test_soak_epoll_selector_million_cycles(pair, capsys):
    """FASTMUX_SOAK_SCALE=1 runs a million register/select/unregister cycles."""
    sock, peer = pair
    peer.send(b"x")  # readable throughout, so every select() builds a result
    data = Payload()
    n = cycles(1_000_000)
    with _selectors_c.EpollSelector() as sel:
        _selector_cycles(sel, sock, data, max(1000, n // 20))  # warm up
        baseline = Baseline(sock, data).start()
        _selector_cycles(sel, sock, data, n)
        figures = baseline.check(n)
    with capsys.disabled():
        print(f"\n  EpollSelector x{n}: {figures}")


@pytest.mark.soak
@pytest.mark.parametrize("backend", ["poll", "select"])
def test_soak_poll_and_select_selectors(backend, pair, capsys):
    sock, peer = pair
    peer.send(b"x")
    data = Payload()
    n = cycles(200_000)
    with SELECTOR_CLASSES[backend]() as sel:
        _selector_cycles(sel, sock, data, max(1000, n // 20))
        baseline = Baseline(sock, data).start()
        _selector_cycles(sel, sock, data, n)
        figures = baseline.check(n)
    with capsys.disabled():
        print(f"\n  {SELECTOR_CLASSES[backend].__name__} x{n}: {figures}")


def _poller_cycles(p, sock, fd, n):
    register, poll, unregister = p.register, p.poll, p.unregister
    for _ in range(n):
        register(sock, POLLIN)
        assert poll(0) == [(fd, POLLIN)]
        unregister(sock)


@pytest.mark.soak
@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_pollers(backend, pair, capsys):
    sock, peer = pair
    peer.send(b"x")
    n = cycles(200_000)
    with POLLER_CLASSES[backend]() as p:
        _poller_cycles(p, sock, sock.fileno(), max(1000, n // 20))
        baseline = Baseline(sock).start()
        _poller_cycles(p, sock, sock.fileno(), n)
        figures = baseline.check(n)
    with capsys.disabled():
        print(f"\n  {POLLER_CLASSES[backend].__name__} x{n}: {figures}")


# -- error paths ---------------------------------------------------------------------


def test_epoll_refusing_a_regular_file_does_not_leak(regular_file, capsys):
    """epoll refuses regular files (EPERM): PermissionError, 100k times at
    the default scale, from the raw poller and from the selector."""
    data = Payload()
    n = cycles(100_000)
    with _pollers_c.Epoll() as p, _selectors_c.EpollSelector() as sel:
        def attempt():
            with pytest.raises(PermissionError):
                p.register(regular_file, POLLIN)
            with pytest.raises(PermissionError):
                sel.register(regular_file, READ, data)

        for _ in range(1000):
            attempt()
        baseline = Baseline(regular_file, data).start()
        for _ in range(n):
            attempt()
        figures = baseline.check(n)
        assert len(sel.get_map()) == 0
        assert p.poll(0) == [] and sel.select(0) == []
    with capsys.disabled():
        print(f"\n  PermissionError x{n} (x2): {figures}")


def test_closed_descriptors_are_refused_without_leaking(capsys):
    """A closed fd: OSError (EBADF) from epoll's register, and from the
    select backend's wait; a closed socket object: ValueError."""
    data = Payload()
    dead = socket.socket()
    dead.close()
    n = cycles(50_000)
    with _pollers_c.Epoll() as ep, _selectors_c.EpollSelector() as esel, \
            _pollers_c.Select() as sp, _selectors_c.SelectSelector() as ssel:
        fd = closed_fd()
        sp.register(fd, POLLIN)  # select() only notices at the wait
        ssel.register(fd, READ, data)

        def attempt():
            with pytest.raises(OSError) as info:
                ep.register(fd, POLLIN)
            assert info.value.errno == errno.EBADF
            with pytest.raises(OSError):
                esel.register(fd, READ, data)
            with pytest.raises(ValueError):
                esel.register(dead, READ, data)
            with pytest.raises(OSError):
                sp.poll(0)
            with pytest.raises(OSError):
                ssel.select(0)

        for _ in range(500):
            attempt()
        baseline = Baseline(dead, data).start()
        for _ in range(n):
            attempt()
        figures = baseline.check(n)
        assert len(esel.get_map()) == 0
        ssel.unregister(fd)
    with capsys.disabled():
        print(f"\n  closed-fd errors x{n} (x5): {figures}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_selector_api_errors_do_not_leak(backend, pair):
    sock, _ = pair
    data, other = Payload(), Payload()
    not_a_file = Payload()
    n = cycles(20_000)
    cls = SELECTOR_CLASSES[backend]
    closed = cls()
    closed.close()
    with cls() as sel:
        sel.register(sock, READ, data)

        def attempt():
            with pytest.raises(KeyError):
                sel.register(sock, READ, other)  # already registered
            with pytest.raises(ValueError):
                sel.register(not_a_file, READ, other)
            with pytest.raises(ValueError):
                sel.register(-1, READ, other)
            with pytest.raises(ValueError):
                sel.modify(sock, 0, other)  # invalid events
            with pytest.raises(ValueError):
                sel.unregister(not_a_file)
            with pytest.raises(KeyError):
                sel.unregister(sock.fileno() + 1000)
            with pytest.raises(KeyError):
                sel.get_key(12345)
            with pytest.raises(ValueError):
                closed.register(sock, READ, other)
            if backend != "epoll":
                with pytest.raises(ValueError):
                    sel.register(sock.fileno() + 1, READ, other, flags=_selectors_c.EPOLLET)

        for _ in range(500):
            attempt()
        baseline = Baseline(sock, data, other, not_a_file).start()
        for _ in range(n):
            attempt()
        baseline.check(n)
        assert sel.get_key(sock).data is data


def test_uninitialised_selector_is_closed_not_a_crash(pair):
    """A selector whose __init__ never ran (``cls.__new__(cls)``, or a
    subclass that skips it) behaves as closed instead of dereferencing a
    missing poller in C."""
    sock, _ = pair

    class Lazy(_selectors_c.EpollSelector):
        def __init__(self):
            pass

    for sel in (_selectors_c.EpollSelector.__new__(_selectors_c.EpollSelector),
                _selectors_c.PollSelector.__new__(_selectors_c.PollSelector),
                Lazy()):
        with pytest.raises(ValueError):
            sel.select(0)
        with pytest.raises(ValueError):
            sel.register(sock, READ)
        with pytest.raises(KeyError):
            sel.unregister(sock)
        assert len(sel._fds()) == 0
        sel.close()


# A marker, not a skip inside the test: a skip raised after the sockets are
# made would leave them unclosed, for a later test's gc.collect() to find.
@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="3.12+ runs GC passes at eval-breaker points only, never inside select()'s C loop")
@pytest.mark.parametrize("action", ["close", "register"])
@pytest.mark.parametrize("after_collections", [1, 2, 5])
def test_select_survives_reentrant_use_from_a_gc_callback(action, after_collections, high_fd):
    """select() builds its result list after the wait; each new tuple may
    start a GC pass whose callbacks (or finalizers) run Python code.  Code
    that closes the selector, or registers an fd that grows its buffers,
    must not leave select() reading freed memory (valgrind would flag it;
    here the result must simply stay consistent)."""
    socks = [socket.socketpair() for _ in range(30)]
    sel = _selectors_c.EpollSelector()
    fired = []

    def callback(phase, info):
        if phase != "start" or fired:
            return
        if len(fired_at) < after_collections - 1:
            fired_at.append(1)
            return
        fired.append(phase)
        if action == "close":
            sel.close()
        else:
            sel.register(high_fd, READ)  # far above the others: the buffers grow

    fired_at = []
    threshold = gc.get_threshold()
    try:
        for a, b in socks:
            sel.register(a, READ)
            b.send(b"x")
        keep = [(i, -i) for i in range(5000)]  # empty the 2-tuple free list: new tuples go through the GC
        gc.callbacks.append(callback)
        gc.set_threshold(1)
        try:
            ready = sel.select(0)
        finally:
            gc.set_threshold(*threshold)
            gc.callbacks.remove(callback)
        del keep
        assert fired, "no GC pass ran during select(): the test did not test anything"
        fds = [key.fd for key, _ in ready]
        assert len(set(fds)) == len(fds)
        expected = {a.fileno() for a, _ in socks}
        assert set(fds) <= expected
        assert all(events == READ for _, events in ready)
        if action == "register":
            assert set(fds) == expected  # registering does not stop the loop
    finally:
        sel.close()
        for a, b in socks:
            a.close()
            b.close()


def test_kernel_floor_frees_its_buffers_on_errors():
    """_kernel_floor copies the fds into a C array: an item that is not an
    int raises TypeError and must not leak the array (40 KB a call here);
    a sequence whose len() lies must not overrun it."""
    ep = select.epoll()
    try:
        bad = [ep.fileno()] * 10_000 + ["not an fd"]
        n = cycles(1_000, minimum=50)
        for _ in range(20):
            with pytest.raises(TypeError):
                _kernel_floor.epoll_ctl_add_del_ns(ep.fileno(), bad, 1)
        baseline = Baseline(bad).start()
        for _ in range(n):
            with pytest.raises(TypeError):
                _kernel_floor.epoll_ctl_add_del_ns(ep.fileno(), bad, 1)
            with pytest.raises(TypeError):
                _kernel_floor.epoll_ctl_mod_ns(ep.fileno(), bad, 1)
        baseline.check(n)

        class Liar:
            def __len__(self):
                return 1

            def __iter__(self):
                return iter([ep.fileno()] * 4096)

        with pytest.raises(OSError):  # the epoll fd itself: EINVAL, after copying all 4096
            _kernel_floor.epoll_ctl_mod_ns(ep.fileno(), Liar(), 1)
        a, b = socket.socketpair()
        try:
            assert _kernel_floor.epoll_ctl_add_del_ns(ep.fileno(), [a.fileno(), b.fileno()], 10) > 0
            ns, k = _kernel_floor.epoll_wait_ns(ep.fileno(), 4, 100)
            assert ns > 0 and k == 0
        finally:
            a.close()
            b.close()
    finally:
        ep.close()


@pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"), reason="sys.gettotalrefcount() needs a debug build of CPython")
def test_total_refcount_is_flat(pair):
    sock, peer = pair
    peer.send(b"x")
    data = Payload()
    with _selectors_c.EpollSelector() as sel:
        _selector_cycles(sel, sock, data, 1000)
        gc.collect()
        before = sys.gettotalrefcount()
        _selector_cycles(sel, sock, data, 20_000)
        gc.collect()
        assert abs(sys.gettotalrefcount() - before) < 100
