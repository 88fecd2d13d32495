"""add_reader/add_writer on sockets, pipes, ttys and regular files, and the fd traps."""
from __future__ import annotations

import contextvars
import os
import selectors
import socket
import tempfile
import time

import pytest

from fastmux.reactor import Reactor

TIMEOUT = 10.0


def test_reader_called_when_readable(loop, socketpair, handle):
    a, b = socketpair()
    got = []

    def on_readable(tag):
        got.append((tag, a.recv(100)))

    loop.add_reader(handle(a), on_readable, "tag")
    b.send(b"ping")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got == [("tag", b"ping")]
    assert loop.remove_reader(handle(a)) is True
    assert loop.remove_reader(handle(a)) is False


def test_writer_called_when_writable(loop, socketpair, handle):
    a, _ = socketpair()
    hits = []
    loop.add_writer(handle(a), hits.append, 1)
    assert loop.run_until(lambda: hits, timeout=TIMEOUT)
    assert loop.remove_writer(handle(a)) is True
    assert loop.remove_writer(handle(a)) is False


def test_reader_and_writer_on_one_fd(loop, socketpair, handle):
    a, b = socketpair()
    events = []
    loop.add_reader(handle(a), lambda: events.append("r") or a.recv(10))
    loop.add_writer(handle(a), lambda: events.append("w"))
    b.send(b"x")
    assert loop.run_until(lambda: "r" in events and "w" in events, timeout=TIMEOUT)
    loop.remove_writer(handle(a))
    events.clear()
    b.send(b"y")
    assert loop.run_until(lambda: "r" in events, timeout=TIMEOUT)
    assert "w" not in events
    assert loop.remove_reader(handle(a))
    assert loop.statistics()["fd_callbacks"] == 0


def test_replacing_a_reader(loop, socketpair, handle):
    a, b = socketpair()
    got = []
    loop.add_reader(handle(a), lambda: got.append(("old", a.recv(10))))
    loop.add_reader(handle(a), lambda: got.append(("new", a.recv(10))))
    b.send(b"z")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got == [("new", b"z")]
    loop.remove_reader(handle(a))


def test_level_triggered_for_user_callbacks_in_every_mode(loop, socketpair, handle):
    """A callback that reads one byte at a time is called again until drained."""
    a, b = socketpair()
    got = bytearray()
    loop.add_reader(handle(a), lambda: got.extend(a.recv(1)))
    b.send(b"abcdef")
    assert loop.run_until(lambda: len(got) == 6, timeout=TIMEOUT)
    loop.remove_reader(handle(a))
    assert bytes(got) == b"abcdef"


def test_remove_reader_of_closed_socket_object(loop, socketpair):
    a, _ = socketpair()
    loop.add_reader(a, print)
    a.close()  # fileno() is now -1: found by identity
    assert loop.remove_reader(a) is True


def test_pipe(loop, closing):
    r, w = os.pipe()
    closing(r)
    closing(w)
    got = []
    loop.add_reader(r, lambda: got.append(os.read(r, 100)))
    os.write(w, b"through a pipe")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got == [b"through a pipe"]
    loop.remove_reader(r)


def test_pipe_writer_and_hup(loop, closing):
    """Closing the write end: HUP (EOF) wakes the reader, which reads b''."""
    r, w = os.pipe()
    closing(r)
    got = []

    def on_read():
        data = os.read(r, 100)
        got.append(data)
        if not data:
            loop.remove_reader(r)

    loop.add_reader(r, on_read)
    os.close(w)
    assert loop.run_until(lambda: b"" in got, timeout=TIMEOUT)


def test_hup_wakes_writer_too(loop, socketpair):
    """A reset peer wakes a writer-only registration: the write then fails."""
    a, b = socketpair()
    errs = []

    def on_write():
        try:
            a.send(b"x" * 65536)
        except OSError as exc:
            errs.append(exc)
            loop.remove_writer(a)

    b.close()
    loop.add_writer(a, on_write)
    assert loop.run_until(lambda: errs, timeout=TIMEOUT)
    assert isinstance(errs[0], (BrokenPipeError, ConnectionResetError))


def test_tty(loop, closing):
    """The classic 'select on stdin': a pseudo-terminal works with every backend."""
    master, slave = os.openpty()
    closing(master)
    closing(slave)
    got = []
    loop.add_reader(slave, lambda: got.append(os.read(slave, 100)))
    os.write(master, b"typed\n")
    assert loop.run_until(lambda: got, timeout=TIMEOUT)
    assert got[0].startswith(b"typed")
    loop.remove_reader(slave)


@pytest.mark.parametrize("kind", ["file", "devnull"])
def test_regular_file_is_always_ready(loop, closing, kind, handle):
    """epoll refuses regular files (EPERM); the reactor reports them ready, as select does."""
    if kind == "file":
        f = closing(tempfile.TemporaryFile())
        f.write(b"contents")
        f.flush()
        f.seek(0)
    else:
        f = closing(open(os.devnull, "rb"))
    got = []
    loop.add_reader(handle(f), lambda: got.append(os.read(f.fileno(), 100)))
    assert loop.run_until(lambda: len(got) >= 2, timeout=TIMEOUT)
    assert got[0] == (b"contents" if kind == "file" else b"")
    writes = []
    loop.add_writer(handle(f), lambda: writes.append(1))
    assert loop.run_until(lambda: writes, timeout=TIMEOUT)
    assert loop.remove_writer(handle(f))
    assert loop.remove_reader(handle(f))
    if loop.backend == "epoll":
        assert loop.statistics()["always_ready"] == 0


def test_callback_exception_is_reported_and_callback_stays(loop, socketpair):
    a, b = socketpair()
    calls = []

    def flaky():
        calls.append(a.recv(1))
        if len(calls) == 1:
            raise ValueError("first call fails")

    loop.add_reader(a, flaky)
    b.send(b"12")
    assert loop.run_until(lambda: len(calls) == 2, timeout=TIMEOUT)
    errors, loop.errors[:] = list(loop.errors), []
    assert len(errors) == 1 and isinstance(errors[0]["exception"], ValueError)
    loop.remove_reader(a)


def test_add_reader_on_closed_fd_fails(loop):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop.add_reader(r, print)
    assert loop.statistics()["fd_callbacks"] == 0


def test_fd_closed_while_registered_is_dropped_not_spun_on(loop, closing):
    """The callback meets EBADF; the loop drops the fd instead of failing every iteration."""
    r, w = os.pipe()
    closing(w)
    calls = []

    def on_read():
        calls.append(1)
        os.read(r, 10)  # EBADF once r is closed

    loop.add_reader(r, on_read)
    os.write(w, b"x")
    assert loop.run_until(lambda: calls, timeout=TIMEOUT)
    # now close r behind the loop's back (epoll forgets it; poll says POLLNVAL;
    # select fails with EBADF)
    os.close(r)
    start = loop.statistics()["iterations"]
    loop.run_until(loop.time() + 0.2)
    spent = loop.statistics()["iterations"] - start
    assert spent < 50, f"{spent} iterations: the loop is spinning"
    if loop.backend != "epoll":  # epoll never hears of it again: nothing to do
        assert loop.statistics()["fd_callbacks"] == 0
    loop.errors.clear()  # EBADF from the callback (where it ran), and the drop notice


def test_closed_and_reused_fd_gets_the_new_file(loop, socketpair):
    """add_reader for a number whose file changed (closed without remove_reader,
    number reused) drops the stale callbacks and watches the new file."""
    a, b = socketpair()
    old = []
    loop.add_reader(a, lambda: old.append(1))
    fd = a.fileno()
    a.close()  # no remove_reader: the user's bug
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            c2 = socket.socket(fileno=os.dup2(c.fileno(), fd))  # make the number collide
            c.close()
            c = c2
        got = []
        loop.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"new file")
        assert loop.run_until(lambda: got, timeout=TIMEOUT)
        assert got == [b"new file"] and not old
        messages = [ctx["message"] for ctx in loop.errors]
        loop.errors.clear()
        assert any("closed and reused" in m for m in messages)
        loop.remove_reader(c)
    finally:
        c.close()
        d.close()


def test_dup_keeps_stale_registration_alive_epoll_rebuilds():
    """An fd closed while registered but kept alive by a dup() fires under a number
    that can no longer be unregistered; the reactor rebuilds its epoll set
    instead of spinning."""
    with Reactor("epoll") as loop:
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        r, w = os.pipe()
        calls = []

        def on_read():
            calls.append(1)
            os.read(r, 10)  # EBADF once r is closed

        loop.add_reader(r, on_read)
        keep = os.dup(r)
        try:
            os.close(r)  # the file lives on through `keep`: the kernel keeps (r, file) registered
            os.write(w, b"x")  # level-triggered readable, forever
            start = loop.statistics()["iterations"]
            t0 = time.process_time()
            loop.run_until(loop.time() + 0.3)
            spent = loop.statistics()["iterations"] - start
            cpu = time.process_time() - t0
            assert spent < 100, f"{spent} iterations in 0.3 s: spinning"
            assert cpu < 0.2
            assert loop.statistics()["rebuilds"] >= 1
        finally:
            os.close(keep)
            os.close(w)


def test_select_backend_survives_a_closed_fd():
    """select() fails as a whole with EBADF; the reactor finds the fd and drops it."""
    with Reactor("select") as loop:
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        r, w = os.pipe()
        loop.add_reader(r, print)
        os.close(r)
        os.close(w)
        out = []
        loop.call_later(0.01, out.append, 1)
        assert loop.run_until(lambda: out, timeout=TIMEOUT)
        assert loop.statistics()["fd_callbacks"] == 0
        assert any("closed" in ctx["message"] for ctx in errors)


def test_fd_of_a_transport_cannot_take_callbacks(loop, socketpair, recorder):
    a, _ = socketpair()
    transport, _ = loop.create_connection(recorder, sock=a)
    with pytest.raises(RuntimeError):
        loop.add_reader(a.fileno(), print)
    transport.abort()
    assert loop.run_until(lambda: transport.get_protocol() is None, timeout=TIMEOUT)


def test_invalid_fd_arguments(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError):
        loop.add_reader(object(), print)
    with pytest.raises(TypeError):
        loop.add_reader(0, "not callable")


def test_fd_too_large_for_select(closing, nofile_raise):
    nofile_raise(2048)
    with Reactor("select") as loop:
        a, b = socket.socketpair()
        closing(a)
        closing(b)
        high = os.dup2(a.fileno(), 1500)
        closing(high)
        with pytest.raises(ValueError):
            loop.add_reader(high, print)


@pytest.fixture
def nofile_raise():
    import resource

    saved = resource.getrlimit(resource.RLIMIT_NOFILE)

    def need(n):
        soft, hard = saved
        if soft < n:
            if hard != resource.RLIM_INFINITY and hard < n:
                pytest.skip("RLIMIT_NOFILE too low")
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))

    yield need
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_reused_fd_taken_by_an_accepted_connection(loop, socketpair, recorder, closing):
    """A user fd closed without remove_reader; its number goes to a connection the
    server accepts.  The stale callbacks are dropped (and reported) and the new
    transport works."""
    protos = []
    server = loop.create_server(lambda: protos.append(recorder(echo=True)) or protos[-1], "127.0.0.1", 0)
    client = closing(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
    a, _ = socketpair()
    stale = []
    loop.add_reader(a, lambda: stale.append(1))
    fd = a.fileno()
    a.close()  # the user's bug: no remove_reader
    assert loop.run_until(lambda: protos and protos[0].transport, timeout=TIMEOUT)
    transport = protos[0].transport
    if transport.get_extra_info("socket").fileno() != fd:
        pytest.skip("the accepted connection got another number")
    client.sendall(b"fresh")
    assert loop.run_until(lambda: protos[0].data == b"fresh", timeout=TIMEOUT)
    client.settimeout(TIMEOUT)
    assert client.recv(10) == b"fresh"  # echoed by the new transport
    # epoll: found at registration ("closed and reused"); select: EBADF first;
    # poll: POLLNVAL may run the stale callback once, before the number is reused
    assert any("closed" in ctx["message"] for ctx in loop.errors)
    loop.errors.clear()
    server.close()


_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def test_fd_callbacks_run_the_handle_they_are_given(loop, socketpair, handles_module):
    """``FdCallbacks.add(fileobj, event, handle)`` (what add_reader/add_writer and the
    asyncio face's hooks call) runs that handle, in its context if it has one; the
    handle it replaces, and the one removed, are cancelled."""
    a, b = socketpair()
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "given")
    seen = []
    first = handles_module.Handle(lambda: seen.append(("first", _var.get(), a.recv(10))), (), ctx)
    loop._fdcb.add(a, selectors.EVENT_READ, first)
    b.send(b"1")
    assert loop.run_until(lambda: seen, timeout=TIMEOUT)
    assert seen == [("first", "given", b"1")]
    second = handles_module.Handle(lambda: seen.append(("second", _var.get(), a.recv(10))), ())
    loop._fdcb.add(a, selectors.EVENT_READ, second)
    assert first.cancelled() and not second.cancelled()
    token = _var.set("caller's")  # no context of its own: whichever is current when it runs
    try:
        b.send(b"2")
        assert loop.run_until(lambda: len(seen) == 2, timeout=TIMEOUT)
    finally:
        _var.reset(token)
    assert seen[1] == ("second", "caller's", b"2")
    assert loop._fdcb.remove(a, selectors.EVENT_READ)
    assert second.cancelled()
    with pytest.raises(TypeError, match="callable"):
        loop._fdcb.add(a, selectors.EVENT_READ, handles_module.Handle(None, ()))
    assert loop.statistics()["fd_callbacks"] == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, GeneratorExit])
def test_fd_callback_base_exception_propagates(loop, socketpair, exc_type):
    """The Reactor face: what is not an Exception goes out of the run, as from any callback."""
    a, b = socketpair()

    def boom():
        raise exc_type()

    loop.add_reader(a, boom)
    b.send(b"x")
    with pytest.raises(exc_type):
        loop.run_until(loop.time() + TIMEOUT)
    assert loop.remove_reader(a)
