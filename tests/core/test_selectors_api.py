"""``fastmux.selectors`` is a drop-in for the stdlib ``selectors``: every
implementation x backend, checked against its stdlib twin wherever the
behaviour must match, plus the deliberate differences documented in
``_selectors_c.pyx``, plus real asyncio code on top."""
from __future__ import annotations

import asyncio
import collections.abc
import fcntl
import io
import os
import re
import selectors
import socket
import threading
import time

import pytest

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
FD_SETSIZE = 1024


@pytest.fixture
def sel(selector_cls):
    s = selector_cls()
    yield s
    s.close()


@pytest.fixture
def std(stdlib_selector_cls):
    s = stdlib_selector_cls()
    yield s
    s.close()


@pytest.fixture
def backend(impl_backend):
    return impl_backend[1]


def outcome(fn):
    """What a call did: ("ok", value) or (exception type, message)."""
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - compared, not swallowed
        return (type(e), str(e))


def same(fn, sel, std):
    """``fn(selector)`` must do the same for fastmux and for the stdlib."""
    got = outcome(lambda: fn(sel))
    want = outcome(lambda: fn(std))
    assert got == want
    return got


def ready(selector, timeout=0):
    """``select()`` as sorted (fd, events, data), after checking each key is
    the registered one."""
    out = []
    for key, events in selector.select(timeout):
        assert isinstance(key, selectors.SelectorKey)
        assert selector.get_key(key.fd) is key
        out.append((key.fd, events, key.data))
    return sorted(out, key=repr)


# -- the stdlib's types -------------------------------------------------------------


def test_types_are_the_stdlibs(sel, selectors_mod):
    import fastmux.selectors

    assert isinstance(sel, selectors.BaseSelector)
    assert selectors_mod.SelectorKey is selectors.SelectorKey
    assert selectors_mod.BaseSelector is selectors.BaseSelector
    assert (selectors_mod.EVENT_READ, selectors_mod.EVENT_WRITE) == (READ, WRITE)
    assert fastmux.selectors.SelectorKey is selectors.SelectorKey
    for name in ("EpollSelector", "PollSelector", "SelectSelector", "DefaultSelector"):
        assert issubclass(getattr(fastmux.selectors, name), selectors.BaseSelector)


def test_keys_are_selector_keys(sel, pair, handle):
    a, b = pair
    obj = handle(a)
    key = sel.register(obj, READ, "data")
    assert type(key) is selectors.SelectorKey
    assert key == (obj, a.fileno(), READ, "data")
    assert key.fileobj is obj and key.fd == a.fileno() and key.events == READ and key.data == "data"
    assert key._replace(data=1).data == 1  # a real namedtuple
    b.send(b"x")
    [(got, events)] = sel.select(0)
    assert got is key and events == READ


def test_register_get_unregister(sel, pair, handle):
    a, _ = pair
    obj = handle(a)
    key = sel.register(obj, WRITE)
    assert sel.get_key(a) is key
    assert sel.get_key(a.fileno()) is key
    assert ready(sel) == [(a.fileno(), WRITE, None)]
    assert sel.unregister(obj) is key
    with pytest.raises(KeyError):
        sel.get_key(obj)
    assert sel.select(0) == []
    key2 = sel.register(obj, READ | WRITE)  # again, after unregister
    assert key2 is not key and key2.events == READ | WRITE


def test_context_manager(selector_cls, pair):
    with selector_cls() as s:
        s.register(pair[0], WRITE)
        assert len(s.get_map()) == 1
    assert s.get_map() is None
    with pytest.raises(RuntimeError):
        s.get_key(pair[0])
    s.close()  # twice is fine


# -- get_map() ----------------------------------------------------------------------


def test_get_map_is_a_live_read_only_mapping(sel, socketpair):
    (a, _), (b, _), (c, _) = socketpair(), socketpair(), socketpair()
    m = sel.get_map()
    assert isinstance(m, collections.abc.Mapping)
    assert len(m) == 0 and list(m) == []
    ka = sel.register(a, READ, "a")
    kb = sel.register(b.fileno(), WRITE, "b")
    assert sel.get_map() is m
    assert len(m) == 2  # reflects later registrations
    assert sorted(m) == sorted([a.fileno(), b.fileno()])  # iterates fds
    assert m[a] is ka and m[a.fileno()] is ka
    assert m[b.fileno()] is kb and m[b] is kb
    assert a in m and a.fileno() in m and b in m
    assert c not in m and c.fileno() not in m
    assert m.get(c) is None and m.get(a) is ka
    assert sorted(m.keys()) == sorted([a.fileno(), b.fileno()])
    assert sorted(m.values(), key=repr) == sorted([ka, kb], key=repr)
    assert dict(m.items()) == {a.fileno(): ka, b.fileno(): kb}
    with pytest.raises(KeyError):
        m[c]
    with pytest.raises(TypeError):
        m[c] = ka
    with pytest.raises(TypeError):
        del m[a]
    assert not hasattr(m, "pop") and not hasattr(m, "clear") and not hasattr(m, "update")
    kc = sel.register(c, READ)
    assert len(m) == 3 and m[c] is kc
    new_a = sel.modify(a, READ | WRITE, "a2")
    assert m[a] is new_a
    sel.unregister(b)
    assert len(m) == 2 and b not in m
    sel.close()
    assert sel.get_map() is None


def test_get_map_matches_stdlib(sel, std, socketpair):
    (a, _), (b, _) = socketpair(), socketpair()
    for s in (sel, std):
        s.register(a, READ, "a")
    for fn in (
        lambda s: len(s.get_map()),
        lambda s: list(s.get_map()),
        lambda s: s.get_map()[a],
        lambda s: s.get_map()[a.fileno()],
        lambda s: s.get_map()[b],
        lambda s: s.get_map()[b.fileno()],
        lambda s: a in s.get_map(),
        lambda s: b in s.get_map(),
        lambda s: s.get_map()[object],
        lambda s: "x" in s.get_map(),
        lambda s: -1 in s.get_map(),
    ):
        same(fn, sel, std)


# -- exceptions and messages, as the stdlib -------------------------------------------


@pytest.mark.parametrize("events", [0, 4, -1, "x", 1.5, 2**70, None, 3.0, 8, 2**64 + 1],
                         ids=repr)
def test_invalid_events_like_stdlib(sel, std, pair, events):
    a, _ = pair
    got = same(lambda s: s.register(a, events), sel, std)
    assert got[0] in (ValueError, TypeError)
    same(lambda s: len(s.get_map()), sel, std)  # nothing left registered
    assert sel.register(a, READ).events == READ


@pytest.mark.parametrize("events", [True, READ, WRITE, READ | WRITE])
def test_valid_events_like_stdlib(sel, std, pair, events):
    a, _ = pair
    same(lambda s: s.register(a, events, "d"), sel, std)
    same(lambda s: s.get_key(a), sel, std)


def test_double_registration_like_stdlib(sel, std, pair):
    a, _ = pair
    for s in (sel, std):
        s.register(a, READ, "first")
    got = same(lambda s: s.register(a, WRITE), sel, std)
    assert got[0] is KeyError
    got = same(lambda s: s.register(a.fileno(), READ), sel, std)
    assert got[0] is KeyError
    same(lambda s: s.get_key(a), sel, std)  # the first one stays


def test_unknown_fileobj_like_stdlib(sel, std, socketpair):
    (a, _), (b, _) = socketpair(), socketpair()
    for s in (sel, std):
        s.register(a, READ)
    for fn in (
        lambda s: s.unregister(b),
        lambda s: s.unregister(b.fileno()),
        lambda s: s.modify(b, READ),
        lambda s: s.modify(b.fileno(), WRITE, "d"),
        lambda s: s.get_key(b),
        lambda s: s.get_key(b.fileno()),
    ):
        assert same(fn, sel, std)[0] is KeyError


class _NoFileno:
    def __repr__(self):
        return "<NoFileno>"


class _BadFileno:
    def fileno(self):
        return "nope"

    def __repr__(self):
        return "<BadFileno>"


class _NegativeFileno:
    def fileno(self):
        return -5


@pytest.mark.parametrize(
    "bad", [_NoFileno(), _BadFileno(), _NegativeFileno(), -1, "x", 1.5, None, io.BytesIO()],
    ids=["no-fileno", "bad-fileno", "negative-fileno", "-1", "str", "float", "None", "BytesIO"],
)
def test_invalid_fileobj_like_stdlib(sel, std, pair, bad):
    a, _ = pair
    for s in (sel, std):
        s.register(a, READ)
    for fn in (
        lambda s: s.register(bad, READ),
        lambda s: s.unregister(bad),
        lambda s: s.modify(bad, READ),
        lambda s: s.get_key(bad),
    ):
        assert same(fn, sel, std)[0] is ValueError
    same(lambda s: len(s.get_map()), sel, std)


def test_closed_socket_unregistered_is_invalid_like_stdlib(sel, std, socketpair):
    a, _ = socketpair()
    a.close()
    got = same(lambda s: s.register(a, READ), sel, std)
    assert got == (ValueError, "Invalid file descriptor: -1")


def test_get_key_after_close_like_stdlib(sel, std, pair):
    a, _ = pair
    for s in (sel, std):
        s.register(a, READ)
        s.close()
    assert same(lambda s: s.get_key(a), sel, std) == (RuntimeError, "Selector is closed")
    same(lambda s: s.get_map(), sel, std)
    same(lambda s: s.unregister(a), sel, std)


def test_unregister_closed_socket_still_registered(sel, std, socketpair, backend):
    a, _ = socketpair()
    fd = a.fileno()
    keys = {id(s): s.register(a, READ | WRITE, "d") for s in (sel, std)}
    a.close()  # without unregister: fileno() is now -1
    assert same(lambda s: s.get_key(a), sel, std)[0] == "ok"
    got = same(lambda s: s.unregister(a), sel, std)
    assert got[0] == "ok" and got[1].fd == fd and got[1] is keys[id(sel)]
    same(lambda s: s.select(0), sel, std)
    same(lambda s: len(s.get_map()), sel, std)


def test_select_with_closed_fd_still_registered_like_stdlib(sel, std, socketpair, backend):
    a, _ = socketpair()
    for s in (sel, std):
        s.register(a, READ)
    a.close()
    got = outcome(lambda: ready(sel))
    want = outcome(lambda: [(k.fd, ev, k.data) for k, ev in std.select(0)])
    if want[0] is OSError:  # select(2): EBADF
        assert got[0] is OSError or issubclass(got[0], OSError)
        assert "Bad file descriptor" in got[1]
    else:
        assert got == want


def _normalize(trace, fd):
    return [re.sub(rf"\b{fd}\b", "N", repr(item)) for item in trace]


def _reuse_scenario(cls, keep_old_file_open):
    """Register a raw fd, close it without unregistering, and let a new
    socket take the same number; optionally keep the old file alive through
    a dup (epoll's classic trap).  Returns what each step did."""
    a, peer_a = socket.socketpair()
    c, peer_c = socket.socketpair()
    extra = []
    s = cls()
    trace = []
    try:
        n = a.fileno()
        s.register(n, READ, "old")
        if keep_old_file_open:
            extra.append(os.dup(n))
        a.close()
        assert os.dup2(c.fileno(), n) == n  # n now names c's socket
        extra.append(n)
        trace.append(outcome(lambda: s.register(n, READ, "new")))
        trace.append(outcome(lambda: s.get_key(n).data))
        trace.append(outcome(lambda: s.unregister(n).data))
        trace.append(outcome(lambda: s.get_key(n)))
        trace.append(outcome(lambda: s.register(n, READ, "new").data))
        trace.append(outcome(lambda: sorted({(k.data, ev) for k, ev in s.select(0)})))
        peer_c.send(b"x")
        trace.append(outcome(lambda: sorted({(k.data, ev) for k, ev in s.select(0)})))
        if keep_old_file_open:
            peer_a.send(b"y")  # readiness of the old, still open file
            trace.append(outcome(lambda: sorted({(k.data, ev) for k, ev in s.select(0)})))
        trace.append(outcome(lambda: s.unregister(n).data))
        trace.append(outcome(lambda: len(s.get_map())))
        return _normalize(trace, n)
    finally:
        s.close()
        for fd in extra:
            os.close(fd)
        for sock in (c, peer_a, peer_c):
            sock.close()


@pytest.mark.parametrize("keep_old_file_open", [False, True], ids=["closed", "dupd"])
def test_reused_fd_like_stdlib(selector_cls, stdlib_selector_cls, keep_old_file_open):
    got = _reuse_scenario(selector_cls, keep_old_file_open)
    want = _reuse_scenario(stdlib_selector_cls, keep_old_file_open)
    assert got == want


def test_epoll_refuses_regular_file_like_stdlib(sel, std, backend, tmp_path):
    if backend != "epoll":
        pytest.skip("poll and select accept regular files")
    with open(tmp_path / "f", "wb") as f:
        got = same(lambda s: s.register(f, READ), sel, std)
        assert got[0] is PermissionError
        assert same(lambda s: len(s.get_map()), sel, std) == ("ok", 0)
        assert same(lambda s: s.get_key(f), sel, std)[0] is KeyError
        assert same(lambda s: s.register(f, READ), sel, std)[0] is PermissionError  # not KeyError


def test_poll_and_select_accept_regular_file(sel, backend, tmp_path):
    if backend == "epoll":
        pytest.skip("epoll refuses regular files")
    with open(tmp_path / "f", "wb") as f:
        key = sel.register(f, READ | WRITE)
        assert ready(sel) == [(f.fileno(), READ | WRITE, None)]
        assert sel.unregister(f) is key


# -- select() -----------------------------------------------------------------------


def test_select_timeout_none_waits_for_readiness(sel, pair):
    a, b = pair
    key = sel.register(a, READ)

    def write():
        time.sleep(0.05)
        b.send(b"x")

    t = threading.Thread(target=write, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        got = sel.select(None)
    finally:
        t.join()
    assert got == [(key, READ)]
    assert time.monotonic() - t0 >= 0.04


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, -1e9], ids=repr)
def test_select_zero_or_negative_does_not_block(sel, pair, timeout):
    """<= 0 polls (unlike the low-level pollers, where negative is forever);
    a safety writer bounds the test if it did block."""
    a, b = pair
    sel.register(a, READ)
    done = threading.Event()

    def safety():
        if not done.wait(2.0):
            b.send(b"x")

    t = threading.Thread(target=safety, daemon=True)
    t.start()
    try:
        got = sel.select(timeout)
    finally:
        done.set()
        t.join()
    assert got == []


@pytest.mark.parametrize("timeout", [0.1])
def test_select_fractional_timeout_waits_at_least(sel, pair, timeout):
    sel.register(pair[0], READ)
    t0 = time.monotonic()
    assert sel.select(timeout) == []
    assert time.monotonic() - t0 >= timeout * 0.95


def test_select_with_nothing_registered(sel):
    assert sel.select(0) == []
    assert sel.select(0.01) == []


def test_select_masks_with_key_events_like_stdlib(sel, std, socketpair):
    (a, pa), (b, pb), (c, pc) = socketpair(), socketpair(), socketpair()
    for s in (sel, std):
        s.register(a, READ, "a")          # readable and writable: READ only
        s.register(b, WRITE, "b")         # readable and writable: WRITE only
        s.register(c, READ | WRITE, "c")  # not readable: WRITE only
    pa.send(b"x")
    pb.send(b"x")
    got = same(lambda s: ready(s), sel, std)
    assert got == ("ok", sorted([(a.fileno(), READ, "a"), (b.fileno(), WRITE, "b"),
                                 (c.fileno(), WRITE, "c")], key=repr))


def test_hup_maps_to_read_and_write_like_stdlib(sel, std, fds, socketpair, backend):
    r, w = fds.pipe()
    a, pa = socketpair()
    for s in (sel, std):
        s.register(r, READ | WRITE, "pipe")
        s.register(a, READ | WRITE, "sock")
    same(lambda s: ready(s), sel, std)
    fds.close(w)  # the pipe's reader sees only POLLHUP
    pa.close()
    got = same(lambda s: ready(s), sel, std)[1]
    pipe_events = {data: ev for _, ev, data in got}["pipe"]
    # select(2) reports a hang-up as readable only; poll and epoll as both
    assert pipe_events == (READ if backend == "select" else READ | WRITE)


def test_err_maps_to_read_and_write_like_stdlib(sel, std, fds):
    r, w = fds.pipe()
    for s in (sel, std):
        s.register(w, READ, "pipe-writer")  # POLLERR once the reader is gone
    same(lambda s: ready(s), sel, std)
    fds.close(r)
    got = same(lambda s: ready(s), sel, std)
    assert got == ("ok", [(w, READ, "pipe-writer")])  # POLLERR wakes a reader


def test_select_unchanged_results_like_stdlib(sel, std, socketpair):
    pairs = [socketpair() for _ in range(20)]
    for i, (a, _) in enumerate(pairs):
        for s in (sel, std):
            s.register(a, (READ, WRITE, READ | WRITE)[i % 3], i)
    for i, (_, peer) in enumerate(pairs):
        if i % 2:
            peer.send(b"x")
    same(lambda s: ready(s), sel, std)


def test_many_registrations_and_high_fd(sel, backend, socketpair, fds, nofile):
    nofile(FD_SETSIZE + 300)
    pairs = [socketpair() for _ in range(50)]
    for i, (a, _) in enumerate(pairs):
        sel.register(a, WRITE, i)
    assert len(sel.select(0)) == 50
    big = fds.add(fcntl.fcntl(pairs[0][0].fileno(), fcntl.F_DUPFD_CLOEXEC, 1200))
    if backend == "select":
        return  # covered by test_select_selector_rejects_large_fd
    key = sel.register(big, READ, "big")
    pairs[0][1].send(b"x")
    got = {k.data: ev for k, ev in sel.select(0)}
    assert got["big"] == READ and len(got) == 51
    assert sel.get_key(big) is key
    assert sel.unregister(big) is key


# -- modify() -----------------------------------------------------------------------


def test_modify_events(sel, std, pair, handle):
    a, b = pair
    obj = handle(a)
    for s in (sel, std):
        s.register(obj, READ, "d")
    got = same(lambda s: s.modify(obj, WRITE, "d"), sel, std)[1]
    assert got.events == WRITE and got.fileobj is obj and got.data == "d"
    assert sel.get_key(obj) is got
    b.send(b"x")
    assert ready(sel) == [(a.fileno(), WRITE, "d")]


def test_modify_data_only_gives_new_key_with_old_fileobj(sel, std, pair):
    a, _ = pair
    old = {id(s): s.register(a, READ, "old") for s in (sel, std)}
    same(lambda s: s.modify(a, READ, "new"), sel, std)
    key = sel.get_key(a)
    assert key is not old[id(sel)]
    assert key.fileobj is a and key.data == "new" and key.events == READ
    # given by fd, the key still names the socket it was registered with
    key2 = sel.modify(a.fileno(), READ, "newer")
    assert key2.fileobj is a and key2.data == "newer"


def test_modify_without_change_returns_same_key(sel, std, pair):
    a, _ = pair
    data = ["payload"]
    keys = {id(s): s.register(a, READ, data) for s in (sel, std)}
    for s in (sel, std):
        assert s.modify(a, READ, data) is keys[id(s)]
        assert s.modify(a, READ, ["payload"]) is keys[id(s)]  # equal data counts as unchanged


def test_modify_events_and_data(sel, std, pair):
    a, b = pair
    for s in (sel, std):
        s.register(a, READ, 1)
    same(lambda s: s.modify(a, READ | WRITE, 2), sel, std)
    b.send(b"x")
    same(lambda s: ready(s), sel, std)


# -- deliberate differences from the stdlib -------------------------------------------


def test_closed_selector_is_value_error(selector_cls, socketpair):
    """Every backend (the stdlib: only epoll, and only for register/select)."""
    (a, _), (b, _) = socketpair(), socketpair()
    s = selector_cls()
    s.register(a, READ)
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.register(b, READ)
    with pytest.raises(ValueError, match="closed"):
        s.select(0)
    with pytest.raises(ValueError, match="closed"):
        s.select(None)
    with pytest.raises(ValueError, match="closed"):
        s.modify(a, WRITE)
    with pytest.raises(ValueError, match="closed"):
        s.modify(b, WRITE)


def test_select_selector_rejects_large_fd_at_register(selector_cls, stdlib_selector_cls, backend,
                                                      pair, fds, nofile):
    nofile(FD_SETSIZE + 300)
    big = fds.add(fcntl.fcntl(pair[0].fileno(), fcntl.F_DUPFD_CLOEXEC, 1100))
    with selector_cls() as s:
        if backend == "select":
            with pytest.raises(ValueError):
                s.register(big, READ)
            assert len(s.get_map()) == 0  # nothing half-registered
            assert s.select(0) == []
        else:
            s.register(big, READ)
            assert s.select(0) == []
    if backend == "select":  # the stdlib only fails later, at select()
        with stdlib_selector_cls() as s:
            s.register(big, READ)
            with pytest.raises(ValueError):
                s.select(0)


@pytest.mark.parametrize("events", [0, 4, -1, 2**70, None], ids=repr)
def test_modify_invalid_events_keeps_registration(sel, pair, events):
    a, b = pair
    key = sel.register(a, READ, "d")
    with pytest.raises(ValueError, match="Invalid events"):
        sel.modify(a, events, "d")
    assert sel.get_key(a) is key
    b.send(b"x")
    assert sel.select(0) == [(key, READ)]  # the kernel side is intact too


@pytest.mark.parametrize("events", ["x", 1.5])
def test_modify_non_int_events_is_type_error_and_keeps_registration(sel, pair, events):
    a, _ = pair
    key = sel.register(a, READ)
    with pytest.raises(TypeError):
        sel.modify(a, events)
    assert sel.get_key(a) is key


def test_epoll_selector_fileno(selectors_mod):
    with selectors_mod.EpollSelector() as s:
        fd = s.fileno()
        assert isinstance(fd, int) and fd >= 0
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    with pytest.raises(ValueError):
        s.fileno()


def test_default_selector(selectors_mod):
    assert selectors_mod.DefaultSelector is selectors_mod.EpollSelector


# -- asyncio on top --------------------------------------------------------------------


async def _echo_roundtrip():
    loop = asyncio.get_running_loop()
    handlers_done = loop.create_future()

    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data.upper())
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            handlers_done.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = []
    for msg in (b"hello", b"x" * 300_000):
        writer.write(msg)
        await writer.drain()
        got.append(await reader.readexactly(len(msg)))
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    await handlers_done
    server.close()
    await server.wait_closed()

    t0 = loop.time()
    await asyncio.sleep(0.02)
    slept = loop.time() - t0
    summed = await loop.run_in_executor(None, sum, range(10))
    await loop.shutdown_default_executor()
    return got, slept, summed


def test_asyncio_selector_event_loop(selector_cls):
    selector = selector_cls()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        got, slept, summed = loop.run_until_complete(asyncio.wait_for(_echo_roundtrip(), 20))
    finally:
        loop.close()
    assert got == [b"HELLO", b"X" * 300_000]
    assert slept >= 0.015
    assert summed == 45
    assert selector.get_map() is None  # the loop closed its selector


def test_asyncio_with_default_fastmux_selector():
    import fastmux.selectors

    loop = asyncio.SelectorEventLoop(fastmux.selectors.DefaultSelector())
    try:
        got, _, _ = loop.run_until_complete(asyncio.wait_for(_echo_roundtrip(), 20))
    finally:
        loop.close()
    assert got[0] == b"HELLO"


def test_ready_pairs_follow_every_change_of_a_registration(sel, pair):
    """The compiled selector reuses its (key, events) pairs between calls;
    whatever changes the key or its events must show in the next select()."""
    sock, peer = pair
    peer.send(b"x")  # sock is readable; it is always writable
    key = sel.register(sock, selectors.EVENT_READ, "a")
    assert sel.select(0) == [(key, selectors.EVENT_READ)]
    assert sel.select(0)[0][0] is key
    key = sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, "b")
    got = sel.select(0)
    assert got == [(key, selectors.EVENT_READ | selectors.EVENT_WRITE)] and got[0][0] is key
    key = sel.modify(sock, selectors.EVENT_WRITE, "c")
    assert sel.select(0) == [(key, selectors.EVENT_WRITE)] and sel.select(0)[0][0].data == "c"
    sel.unregister(sock)
    key = sel.register(sock, selectors.EVENT_READ, "d")
    got = sel.select(0)
    assert got == [(key, selectors.EVENT_READ)] and got[0][0].data == "d"


# -- _select_data: the reactor's view of the ready list ------------------------------


def _by_data(selector):
    flat = selector._select_data(0)
    assert len(flat) % 2 == 0
    return sorted(zip(flat[::2], flat[1::2]), key=repr)


def test_select_data_leaves_out_an_fd_unregistered_during_the_wait(sel, socketpair):
    """Another thread may unregister an fd while ``_select_data`` waits (the GIL is
    released); an event the kernel still reports for it is left out, and the list
    holds whole (data, events) pairs only."""
    (a, pa), (b, pb) = socketpair(), socketpair()
    sel.register(a, READ, "a")
    sel.register(b, READ, "b")
    got = []
    waiter = threading.Thread(target=lambda: got.append(sel._select_data(10)))
    waiter.start()
    time.sleep(0.2)  # let it reach its wait (if it has not, it waits for b alone)
    sel.unregister(a)
    pa.send(b"x")  # select(2) still watches a: it wakes up for it
    time.sleep(0.1)
    pb.send(b"x")
    waiter.join(10)
    assert not waiter.is_alive()
    assert got[0] in ([], ["b", READ])
    assert _by_data(sel) == [("b", READ)]


def test_select_data_is_select_by_registration_data(sel, socketpair):
    """``_select_data`` hands out, flat, each ready fd's registration data and
    events: what select() says, through modify, unregister and data of None."""
    (a, pa), (b, pb), (c, pc), (d, pd) = (socketpair() for _ in range(4))
    sel.register(a, READ, "a")
    sel.register(b, READ | WRITE, None)  # no data: still reported
    sel.register(c, READ, "c")
    sel.register(d, READ, "d")
    for peer in (pa, pb, pc, pd):
        peer.send(b"x")
    sel.modify(c, READ | WRITE, "c2")  # new data and events
    sel.unregister(d)  # ready, but no longer watched
    want = sorted(((key.data, ev) for key, ev in sel.select(0)), key=repr)
    assert want == sorted([("a", READ), (None, READ | WRITE), ("c2", READ | WRITE)], key=repr)
    assert _by_data(sel) == want
    sel.modify(b, READ, "b")
    assert ("b", READ) in _by_data(sel)
    sel.close()
    with pytest.raises((ValueError, RuntimeError, OSError)):
        sel._select_data(0)
