"""The low-level pollers (``Epoll``, ``Poll``, ``Select``), every implementation
x backend: the interface and the policies in ``_pollers_c.pyx``'s docstring."""
from __future__ import annotations

import errno
import fcntl
import importlib
import select
import signal
import socket
import threading
import time

import pytest

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLPRI = select.POLLPRI
POLLHUP = select.POLLHUP
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
FD_SETSIZE = 1024


@pytest.fixture
def poller(poller_cls):
    p = poller_cls()
    yield p
    p.close()


@pytest.fixture
def backend(impl_backend):
    return impl_backend[1]


def _fds(events):
    return sorted(fd for fd, _ in events)


def _later(delay, fn):
    """Run ``fn`` on a thread after ``delay`` s; returns the thread to join."""
    def run():
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# -- interface ----------------------------------------------------------------------


def test_base_class_is_abstract(pollers):
    with pytest.raises(TypeError):
        pollers.Poller()


def test_register_modify_unregister(poller, pair, handle):
    a, b = pair
    fd = a.fileno()
    assert poller.register(handle(a), POLLIN) is None
    assert poller.poll(0) == []
    b.send(b"x")
    assert poller.poll(0) == [(fd, POLLIN)]
    assert poller.modify(handle(a), POLLOUT) is None
    assert poller.poll(0) == [(fd, POLLOUT)]
    poller.modify(handle(a), POLLIN | POLLOUT)
    assert poller.poll(0) == [(fd, POLLIN | POLLOUT)]
    assert poller.unregister(handle(a)) is None
    assert poller.poll(0) == []
    poller.register(handle(a), POLLIN)  # registrable again after unregister
    assert poller.poll(0) == [(fd, POLLIN)]


def test_default_mask_is_in_pri_out(poller, pair, handle):
    a, b = pair
    poller.register(handle(a))
    assert poller.poll(0) == [(a.fileno(), POLLOUT)]  # writable at once
    b.send(b"x")
    assert poller.poll(0) == [(a.fileno(), POLLIN | POLLOUT)]


def test_socket_and_fd_name_the_same_registration(poller, pair):
    a, _ = pair
    poller.register(a, POLLOUT)
    with pytest.raises(FileExistsError):
        poller.register(a.fileno(), POLLOUT)
    poller.modify(a.fileno(), POLLIN)
    poller.unregister(a)
    with pytest.raises(FileNotFoundError):
        poller.unregister(a.fileno())


def test_readable_only_after_send(poller, socketpair):
    pairs = [socketpair() for _ in range(4)]
    for a, _ in pairs:
        poller.register(a, POLLIN)
    assert poller.poll(0) == []
    pairs[1][1].send(b"hello")
    pairs[3][1].send(b"hello")
    assert sorted(poller.poll(0)) == sorted([(pairs[1][0].fileno(), POLLIN), (pairs[3][0].fileno(), POLLIN)])
    pairs[1][0].recv(10)
    assert poller.poll(0) == [(pairs[3][0].fileno(), POLLIN)]


def test_peer_close_reports_hangup(poller, pair, backend):
    a, b = pair
    poller.register(a, POLLIN)
    b.close()
    [(fd, events)] = poller.poll(0)
    assert fd == a.fileno()
    assert events & POLLIN  # EOF is readable on every backend
    if backend in ("epoll", "poll"):
        assert events & POLLHUP


def test_peer_shutdown_reports_rdhup(poller, pair, backend):
    if backend == "select":
        pytest.skip("select(2) has no RDHUP")
    a, b = pair
    poller.register(a, POLLIN | POLLRDHUP)
    assert poller.poll(0) == []
    b.shutdown(socket.SHUT_WR)
    [(fd, events)] = poller.poll(0)
    assert fd == a.fileno()
    assert events & POLLRDHUP and events & POLLIN
    assert not events & POLLHUP  # half-closed, not hung up


def test_closed_and_context_manager(poller_cls, pair):
    a, _ = pair
    p = poller_cls()
    assert p.closed is False
    with p as entered:
        assert entered is p
        p.register(a, POLLOUT)
        assert p.poll(0) == [(a.fileno(), POLLOUT)]
    assert p.closed is True
    with pytest.raises(ValueError):
        with p:
            pass


def test_context_manager_closes_on_error(poller_cls):
    with pytest.raises(KeyError):
        with poller_cls() as p:
            raise KeyError("boom")
    assert p.closed


def test_double_register_is_file_exists(poller, pair, handle):
    a, _ = pair
    poller.register(handle(a), POLLIN)
    with pytest.raises(FileExistsError) as info:
        poller.register(handle(a), POLLOUT)
    assert info.value.errno == errno.EEXIST
    assert poller.poll(0) == []  # the first registration is untouched


def test_unknown_fd_is_file_not_found(poller, pair, handle):
    a, b = pair
    poller.register(b, POLLIN)
    with pytest.raises(FileNotFoundError) as info:
        poller.modify(handle(a), POLLIN)
    assert info.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError) as info:
        poller.unregister(handle(a))
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("bad", [-1, "x", 1.5, object()], ids=["negative", "str", "float", "object"])
def test_invalid_fd(poller, bad):
    with pytest.raises((ValueError, TypeError)):
        poller.register(bad, POLLIN)


def test_closed_socket_is_invalid(poller, socketpair):
    a, _ = socketpair()
    a.close()
    with pytest.raises(ValueError):
        poller.register(a, POLLIN)


def test_use_after_close_is_value_error(poller_cls, pair):
    a, b = pair
    p = poller_cls()
    p.register(b, POLLIN)
    p.close()
    p.close()  # twice is fine
    assert p.closed
    for op in (lambda: p.register(a, POLLIN), lambda: p.modify(b, POLLOUT),
               lambda: p.unregister(b), lambda: p.poll(0), lambda: p.poll(0.01)):
        with pytest.raises(ValueError, match="closed"):
            op()


def test_errors_leave_poller_usable(poller, pair):
    a, b = pair
    with pytest.raises(FileNotFoundError):
        poller.unregister(a)
    poller.register(a, POLLOUT)
    with pytest.raises(FileExistsError):
        poller.register(a, POLLOUT)
    assert poller.poll(0) == [(a.fileno(), POLLOUT)]


# -- timeouts -----------------------------------------------------------------------


def test_zero_timeout_returns_at_once(poller, pair):
    a, _ = pair
    poller.register(a, POLLIN)
    assert poller.poll(0) == []
    assert poller.poll(0.0) == []


@pytest.mark.parametrize("timeout", [None, -1], ids=["None", "-1"])
def test_none_or_negative_waits_until_ready(poller, pair, timeout):
    a, b = pair
    poller.register(a, POLLIN)
    writer = _later(0.05, lambda: b.send(b"x"))
    t0 = time.monotonic()
    try:
        ready = poller.poll(timeout)
    finally:
        writer.join()
    assert ready == [(a.fileno(), POLLIN)]
    assert time.monotonic() - t0 >= 0.04  # it really waited for the writer


@pytest.mark.parametrize("timeout", [0.1])
def test_fractional_timeout_waits_at_least_that_long(poller, pair, timeout):
    a, _ = pair
    poller.register(a, POLLIN)
    t0 = time.monotonic()
    assert poller.poll(timeout) == []
    assert time.monotonic() - t0 >= timeout * 0.95


def test_tiny_timeout_is_not_a_busy_zero(poller, pair):
    a, _ = pair
    poller.register(a, POLLIN)
    assert poller.poll(1e-6) == []  # rounded up to one tick, not an error


def test_timeout_wakes_early_when_ready(poller, pair):
    a, b = pair
    poller.register(a, POLLIN)
    b.send(b"x")
    assert poller.poll(10) == [(a.fileno(), POLLIN)]


def test_bad_timeouts(poller, pair):
    a, _ = pair
    poller.register(a, POLLIN)
    with pytest.raises(ValueError):
        poller.poll(float("nan"))
    with pytest.raises(OverflowError):
        poller.poll(1e10)
    assert poller.poll(0) == []  # still usable


@pytest.mark.parametrize("timeout", ["x", "0.01", b"0.01"], ids=["str", "numeric-str", "bytes"])
def test_non_number_timeout_is_type_error(poller, timeout):
    """Like ``select.epoll().poll("x")``: a timeout must be a real number,
    not something ``float()`` happens to parse."""
    with pytest.raises(TypeError):
        poller.poll(timeout)


# -- maxevents and the result buffer ---------------------------------------------------


def test_maxevents_limits_results(poller, socketpair):
    ends = [socketpair()[0] for _ in range(5)]
    for s in ends:
        poller.register(s, POLLOUT)
    assert len(poller.poll(0)) == 5
    assert len(poller.poll(0, -1)) == 5
    assert len(poller.poll(0, 10)) == 5
    some = poller.poll(0, 2)
    assert len(some) == 2
    assert set(_fds(some)) <= {s.fileno() for s in ends}
    assert len(poller.poll(0, maxevents=1)) == 1


def test_maxevents_zero_is_value_error(poller, pair):
    poller.register(pair[0], POLLOUT)
    with pytest.raises(ValueError):
        poller.poll(0, 0)


def test_poll_with_nothing_registered(poller):
    assert poller.poll(0) == []
    assert poller.poll(0.01) == []


@pytest.mark.parametrize("count", [1, 16, 17, 100])
def test_results_grow_with_registrations(poller, socketpair, count):
    ends = [socketpair()[0] for _ in range(count)]
    for s in ends:
        poller.register(s, POLLOUT)
    assert _fds(poller.poll(0)) == sorted(s.fileno() for s in ends)


def test_one_poll_returns_3000_ready(poller_cls, backend, nofile):
    """The event buffer follows the registrations: one call drains them all."""
    if backend == "select":
        pytest.skip("select(2) cannot watch fds >= FD_SETSIZE")
    n = 3000
    nofile(2 * n + 200)
    socks = []
    try:
        for _ in range(n):
            socks.extend(socket.socketpair())
        with poller_cls() as p:
            # Grow in steps: a buffer sized at the first wait must be resized.
            p.register(socks[0], POLLOUT)
            assert len(p.poll(0)) == 1
            for s in socks[2::2]:
                p.register(s, POLLOUT)
            ready = p.poll(0)
            assert len(ready) == n
            assert _fds(ready) == sorted(s.fileno() for s in socks[::2])
            assert all(ev == POLLOUT for _, ev in ready)
            for s in socks[2::4]:
                p.unregister(s)
            assert len(p.poll(0)) == n - len(socks[2::4])
    finally:
        for s in socks:
            s.close()


# -- backend specifics --------------------------------------------------------------


def test_epoll_fileno_and_cloexec(pollers):
    with pollers.Epoll() as ep:
        fd = ep.fileno()
        assert isinstance(fd, int) and fd >= 0
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    with pytest.raises(ValueError):
        ep.fileno()


def test_epoll_rejects_regular_file(pollers, tmp_path, pair):
    with open(tmp_path / "f", "wb") as f, pollers.Epoll() as ep:
        with pytest.raises(PermissionError):
            ep.register(f, POLLIN)
        with pytest.raises(PermissionError):
            ep.register(f.fileno(), POLLIN)
        ep.register(pair[0], POLLOUT)  # still usable
        assert ep.poll(0) == [(pair[0].fileno(), POLLOUT)]


def test_epoll_extra_flags_pass_through(pollers, pair):
    a, b = pair
    with pollers.Epoll() as ep:
        ep.register(a, POLLIN | pollers.EPOLLET)
        b.send(b"x" * 10)
        assert ep.poll(0) == [(a.fileno(), POLLIN)]
        assert ep.poll(0) == []  # edge-triggered: no new edge
        ep.modify(a, POLLIN | pollers.EPOLLONESHOT)
        assert ep.poll(0) == [(a.fileno(), POLLIN)]
        assert ep.poll(0) == []  # one-shot: disabled until re-armed
        ep.modify(a, POLLIN | pollers.EPOLLONESHOT)
        assert ep.poll(0) == [(a.fileno(), POLLIN)]


def test_large_fd(poller_cls, backend, pair, fds, nofile):
    """Select refuses fds >= FD_SETSIZE at register; the others take them."""
    nofile(FD_SETSIZE + 200)
    a, b = pair
    # F_DUPFD: the lowest free fd >= 1100 (dup2 onto a fixed number could
    # silently close an fd someone else owns).
    big = fds.add(fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, 1100))
    assert big >= FD_SETSIZE
    with poller_cls() as p:
        if backend == "select":
            with pytest.raises(ValueError):
                p.register(big, POLLIN)
            with pytest.raises(ValueError):
                p.modify(big, POLLIN)
            assert p.poll(0) == []
        else:
            p.register(big, POLLIN)
            b.send(b"x")
            assert p.poll(0) == [(big, POLLIN)]


def test_select_watches_fd_just_below_setsize(pollers, pair, fds, nofile):
    nofile(FD_SETSIZE + 200)
    a, b = pair
    try:
        low = fds.add(fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, FD_SETSIZE - 1))
    except OSError:
        pytest.skip("no free fd")
    if low != FD_SETSIZE - 1:
        pytest.skip("fd FD_SETSIZE - 1 is in use")
    with pollers.Select() as p:
        p.register(low, POLLIN)
        b.send(b"x")
        assert p.poll(0) == [(low, POLLIN)]


# -- signals (PEP 475) ----------------------------------------------------------------


def test_eintr_is_retried_until_the_deadline(poller, pair, sigalrm):
    """A SIGALRM every 50 ms interrupts a 0.3 s wait: the handler runs, the
    wait resumes, and each retry waits only what is left of the timeout
    (a retry that restarted the full timeout would run until the 60th
    signal, 3 s, where the timer stops itself so the test stays bounded)."""
    a, _ = pair
    poller.register(a, POLLIN)
    seen = []

    def handler(*_):
        seen.append(time.monotonic())
        if len(seen) >= 60:
            signal.setitimer(signal.ITIMER_REAL, 0)

    sigalrm(handler, 0.05, 0.05)
    t0 = time.monotonic()
    assert poller.poll(0.3) == []
    elapsed = time.monotonic() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(seen) >= 2, "the handler must run during the wait"
    assert elapsed >= 0.3 * 0.95
    assert elapsed < 2.5, "a retry restarted the full timeout"


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["forever", "5s"])
def test_raising_handler_propagates_promptly(poller, pair, sigalrm, timeout):
    a, _ = pair
    poller.register(a, POLLIN)

    class Boom(Exception):
        pass

    def handler(*_):
        raise Boom

    sigalrm(handler, 0.05)
    t0 = time.monotonic()
    with pytest.raises(Boom):
        poller.poll(timeout)
    assert time.monotonic() - t0 < 4.0
    assert poller.poll(0) == []  # not left marked as waiting


# -- threads ------------------------------------------------------------------------


def test_gil_released_during_wait(poller, pair):
    a, _ = pair
    poller.register(a, POLLIN)
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        time.sleep(0.01)
        before = count[0]
        assert poller.poll(0.3) == []
        progress = count[0] - before
    finally:
        stop.set()
        t.join()
    assert progress > 1000, "another thread could not run during the wait"


def test_concurrent_poll_is_runtime_error(poller, pair):
    a, b = pair
    poller.register(a, POLLIN)
    waiter_result = []
    waiter_errors = []

    def waiter():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                waiter_result.append(poller.poll(10))
                return
            except RuntimeError as e:  # lost the race to the main thread's probe
                waiter_errors.append(e)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    got = None
    try:
        deadline = time.monotonic() + 5
        while got is None and time.monotonic() < deadline:
            try:
                poller.poll(0)
            except RuntimeError as e:
                got = e
            else:
                time.sleep(0.002)
    finally:
        b.send(b"x")
        t.join()
    assert got is not None, "a second concurrent poll() must raise RuntimeError"
    assert "concurrent" in str(got)
    assert waiter_result == [[(a.fileno(), POLLIN)]]
    assert poller.poll(0) == [(a.fileno(), POLLIN)]  # usable afterwards


def test_register_from_another_thread_during_wait(poller, socketpair, backend):
    wake_r, wake_w = socketpair()
    new_r, new_w = socketpair()
    poller.register(wake_r, POLLIN)
    new_w.send(b"x")  # ready before it is even registered
    results = []
    t = threading.Thread(target=lambda: results.append(poller.poll(10)), daemon=True)
    t.start()
    try:
        time.sleep(0.05)  # let it enter the wait (the test holds either way)
        poller.register(new_r, POLLIN)
        if backend != "epoll":
            time.sleep(0.01)
            wake_w.send(b"x")  # poll/select only see it on the next wait
    finally:
        t.join(10)
        if t.is_alive():
            wake_w.send(b"x")
            t.join()
    seen = set(_fds(results[0])) | set(_fds(poller.poll(0)))
    assert new_r.fileno() in seen
    assert poller.poll(0.01)  # and it stays registered
    poller.unregister(new_r)
    assert new_r.fileno() not in _fds(poller.poll(0))


def test_unregister_from_another_thread_during_wait(poller, socketpair):
    wake_r, wake_w = socketpair()
    other_r, other_w = socketpair()
    poller.register(wake_r, POLLIN)
    poller.register(other_r, POLLIN)
    results = []
    t = threading.Thread(target=lambda: results.append(poller.poll(10)), daemon=True)
    t.start()
    time.sleep(0.05)
    poller.unregister(other_r)
    wake_w.send(b"x")
    t.join()
    assert results and wake_r.fileno() in _fds(results[0])
    other_w.send(b"x")
    assert poller.poll(0) == [(wake_r.fileno(), POLLIN)]


def test_modules_agree_on_constants(impl):
    pollers = importlib.import_module(f"fastmux._pollers_{impl}")
    assert pollers.POLLIN == POLLIN and pollers.POLLOUT == POLLOUT
    assert pollers.FD_SETSIZE == FD_SETSIZE
    assert set(pollers.BACKENDS) == {"epoll", "poll", "select"}
