"""``EpollSelector``'s extras beyond the stdlib: registration ``flags``
(EPOLLET, EPOLLONESHOT, EPOLLRDHUP, EPOLLEXCLUSIVE) and fork safety, for
every implementation.  The flags used are the selectors module's own, as a
user would write ``fastmux.selectors.EPOLLET``."""
from __future__ import annotations

import errno
import importlib
import os
import select
import socket
import sys
import threading
import warnings

import pytest

READ = 1
WRITE = 2
KIB = 1024


@pytest.fixture
def mod(epoll_selector_cls):
    """The selectors module that ``epoll_selector_cls`` comes from."""
    return importlib.import_module(epoll_selector_cls.__module__)


@pytest.fixture
def sel(epoll_selector_cls):
    s = epoll_selector_cls()
    yield s
    s.close()


def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return data


def test_flag_constants(mod):
    """The same values as the stdlib's select module: usable with either."""
    assert mod.EPOLLET == select.EPOLLET == 1 << 31
    assert mod.EPOLLONESHOT == select.EPOLLONESHOT
    assert mod.EPOLLEXCLUSIVE == select.EPOLLEXCLUSIVE
    assert mod.EPOLLRDHUP == select.EPOLLRDHUP
    for name in ("EPOLLET", "EPOLLONESHOT", "EPOLLEXCLUSIVE", "EPOLLRDHUP"):
        assert getattr(mod, name) > 0, name


def test_public_module_exports_the_flags():
    import fastmux.selectors as fs

    assert (fs.EPOLLET, fs.EPOLLONESHOT, fs.EPOLLEXCLUSIVE, fs.EPOLLRDHUP) == (
        select.EPOLLET, select.EPOLLONESHOT, select.EPOLLEXCLUSIVE, select.EPOLLRDHUP)


# -- edge- and level-triggered ------------------------------------------------------


def test_edge_triggered(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, flags=mod.EPOLLET)
    assert sel.select(0) == []
    b.send(b"x" * 2 * KIB)
    assert sel.select(0) == [(key, READ)]
    assert len(_recv_exactly(a, KIB)) == KIB  # half of it: still readable
    assert sel.select(0.05) == []  # ...but no new edge: times out
    b.send(b"y" * KIB)
    assert sel.select(0) == [(key, READ)]  # new data: a new edge
    assert sel.select(0) == []


def test_level_triggered_reports_again(sel, pair):
    a, b = pair
    key = sel.register(a, READ)
    b.send(b"x" * 2 * KIB)
    assert sel.select(0) == [(key, READ)]
    _recv_exactly(a, KIB)
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0.05) == [(key, READ)]


def test_edge_triggered_write(sel, mod, pair):
    a, _ = pair
    key = sel.register(a, WRITE, flags=mod.EPOLLET)
    assert sel.select(0) == [(key, WRITE)]
    assert sel.select(0) == []  # writable all along, but only one edge


def test_modify_with_flags_none_keeps_edge_trigger(sel, mod, pair):
    a, b = pair
    sel.register(a, WRITE, "w", flags=mod.EPOLLET)
    sel.select(0)  # consume the writable edge
    key = sel.modify(a, READ, "r")  # flags=None: keep EPOLLET
    b.send(b"x" * 2 * KIB)
    assert sel.select(0) == [(key, READ)]
    _recv_exactly(a, KIB)
    assert sel.select(0.05) == []  # still edge-triggered
    key = sel.modify(a, READ, "level", flags=0)  # explicit 0: level-triggered
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0) == [(key, READ)]


def test_modify_data_only_keeps_edge_trigger(sel, mod, pair):
    a, b = pair
    sel.register(a, READ, "old", flags=mod.EPOLLET)
    key = sel.modify(a, READ, "new")
    assert key.data == "new"
    b.send(b"x" * 2 * KIB)
    assert sel.select(0) == [(key, READ)]
    _recv_exactly(a, KIB)
    assert sel.select(0) == []


# -- one-shot ---------------------------------------------------------------------


def test_oneshot_disables_until_modify_rearms(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, "d", flags=mod.EPOLLONESHOT)
    b.send(b"x" * 2 * KIB)
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0.05) == []  # disabled although data is pending
    key = sel.modify(a, READ, "d")  # unchanged events still re-arm
    assert sel.get_key(a) is key
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0.05) == []
    key = sel.modify(a, READ, "d", flags=mod.EPOLLONESHOT)
    assert sel.select(0) == [(key, READ)]
    key = sel.modify(a, READ, "d", flags=0)  # back to level-triggered
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0) == [(key, READ)]


def test_oneshot_with_edge_trigger(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, flags=mod.EPOLLONESHOT | mod.EPOLLET)
    b.send(b"x")
    assert sel.select(0) == [(key, READ)]
    b.send(b"y")
    assert sel.select(0.05) == []  # disabled even on a new edge
    key = sel.modify(a, READ)
    assert sel.select(0) == [(key, READ)]


# -- RDHUP and EXCLUSIVE ------------------------------------------------------------


def test_rdhup_reports_peer_shutdown_as_readable(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, flags=mod.EPOLLRDHUP)
    assert sel.select(0) == []
    b.shutdown(socket.SHUT_WR)
    assert sel.select(0) == [(key, READ)]
    assert a.recv(10) == b""


def test_rdhup_with_edge_trigger_reports_once(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, flags=mod.EPOLLRDHUP | mod.EPOLLET)
    b.shutdown(socket.SHUT_WR)
    assert sel.select(0) == [(key, READ)]
    assert sel.select(0.05) == []


def test_exclusive_register_accepted(sel, mod, pair):
    a, b = pair
    key = sel.register(a, READ, flags=mod.EPOLLEXCLUSIVE)
    b.send(b"x")
    assert sel.select(0) == [(key, READ)]
    assert sel.unregister(a) is key


def test_modify_to_exclusive_is_einval(sel, mod, pair):
    a, _ = pair
    sel.register(a, READ)
    with pytest.raises(OSError) as info:
        sel.modify(a, READ, flags=mod.EPOLLEXCLUSIVE)
    assert info.value.errno == errno.EINVAL


def test_modify_of_exclusive_registration_is_einval(sel, mod, pair):
    a, _ = pair
    sel.register(a, READ, flags=mod.EPOLLEXCLUSIVE)
    with pytest.raises(OSError) as info:
        sel.modify(a, READ | WRITE)  # flags=None keeps EPOLLEXCLUSIVE
    assert info.value.errno == errno.EINVAL


def test_failed_modify_leaves_consistent_state(sel, mod, pair):
    """After a modify that the kernel refused, the selector and the kernel
    agree: either the registration is still there (and works), or it is gone
    from both, so the file object can be registered again."""
    a, b = pair
    sel.register(a, READ, flags=mod.EPOLLEXCLUSIVE)
    with pytest.raises(OSError):
        sel.modify(a, READ | WRITE)
    try:
        key = sel.get_key(a)
    except KeyError:
        key = sel.register(a, READ)  # FileExistsError: the kernel kept it
    b.send(b"x")
    assert sel.select(0) == [(key, READ)]


@pytest.mark.parametrize("name", ["PollSelector", "SelectSelector"])
def test_flags_refused_by_poll_and_select(mod, pair, name):
    a, _ = pair
    with getattr(mod, name)() as s:
        for flag in (mod.EPOLLET, mod.EPOLLONESHOT, mod.EPOLLRDHUP, mod.EPOLLEXCLUSIVE):
            with pytest.raises(ValueError):
                s.register(a, READ, flags=flag)
            assert len(s.get_map()) == 0
        key = s.register(a, READ, flags=0)  # 0 is no flag at all
        with pytest.raises(ValueError):
            s.modify(a, WRITE, flags=mod.EPOLLET)
        assert s.get_key(a) is key
        assert s.modify(a, WRITE, flags=0).events == WRITE


@pytest.mark.parametrize("bad", [select.EPOLLIN, select.EPOLLOUT, 1 << 29, 1 << 20], ids=hex)
def test_unknown_flags_refused(sel, pair, bad):
    a, _ = pair
    with pytest.raises(ValueError):
        sel.register(a, READ, flags=bad)
    assert len(sel.get_map()) == 0
    sel.register(a, READ)
    with pytest.raises(ValueError):
        sel.modify(a, WRITE, flags=bad)
    assert sel.get_key(a).events == READ


# -- fork safety -------------------------------------------------------------------


def _fork():
    """os.fork() with no other thread running (asserted, so the child cannot
    inherit a lock held by one).  Python 3.12+ warns about forking a process
    that has threads; this one has none but the warning machinery is
    process-wide, so it is silenced locally rather than through pytest."""
    assert threading.active_count() == 1, "fork with threads running"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _child(check):
    """Run ``check`` in the forked child and leave with its verdict as the exit
    status: never returns, never runs pytest's teardown."""
    code = 3
    try:
        code = 0 if check() else 1
    except BaseException:  # noqa: BLE001 - reported through the exit status
        code = 2
    finally:
        os._exit(code)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_changes_do_not_reach_parent(sel, socketpair):
    (ra, wa), (rb, wb) = socketpair(), socketpair()
    ka = sel.register(ra, READ, "a")
    kb = sel.register(rb, READ, "b")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = _fork()
    if pid == 0:
        def check():
            if sel.unregister(ra) is not ka:
                return False
            sel.modify(rb, READ | WRITE, "b2")
            got = sel.select(0)
            if [(k.data, ev) for k, ev in got] != [("b2", WRITE)]:
                return False
            wa.send(b"x")  # the parent must still see this one
            return sel.select(0.05) == got and ra not in sel.get_map()
        _child(check)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), status
    assert os.WEXITSTATUS(status) == 0, "the child's checks failed"
    # Back in the parent: the child neither removed ra nor added WRITE on rb.
    assert sel.get_key(ra) is ka and sel.get_key(rb) is kb
    got = sel.select(0)
    assert got == [(ka, READ)], got  # the child's send; no stray (kb, 0)
    wb.send(b"y")
    assert sorted((k.data, ev) for k, ev in sel.select(0)) == [("a", READ), ("b", READ)]
    sel.unregister(ra)
    assert sel.select(0) == [(kb, READ)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_keeps_flags(sel, mod, socketpair):
    (ra, wa), (rb, wb) = socketpair(), socketpair()
    sel.register(ra, READ, "et", flags=mod.EPOLLET)
    sel.register(rb, READ, "level")
    wa.send(b"x" * 2 * KIB)
    wb.send(b"x")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = _fork()
    if pid == 0:
        def check():
            first = sorted(k.data for k, _ in sel.select(0))
            second = sorted(k.data for k, _ in sel.select(0))
            return first == ["et", "level"] and second == ["level"]
        _child(check)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert sorted(k.data for k, _ in sel.select(0)) == ["et", "level"]
    assert sorted(k.data for k, _ in sel.select(0)) == ["level"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_epoll_instance(sel, pair):
    sel.register(pair[0], READ)
    parent_fd = sel.fileno()
    r, w = os.pipe()
    try:
        pid = _fork()
        if pid == 0:
            def check():
                sel.select(0)  # first use after fork swaps the instance
                os.write(w, b"%d" % sel.fileno())
                return True
            _child(check)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        child_fd = int(os.read(r, 32))
    finally:
        os.close(r)
        os.close(w)
    # The new instance is made before the inherited one is closed, so a
    # swapped instance has another number; the parent's is untouched.
    assert child_fd != parent_fd
    assert sel.fileno() == parent_fd
    assert sel.select(0) == []
