"""Edge-triggered mode done right (and the same fairness checks in level-triggered mode).

Each test here is one of the traps listed in the essay at the top of
``fastmux/reactor/loop.py``.
"""
from __future__ import annotations

import socket
import threading

import pytest

import fastmux.selectors as fsel
from fastmux.reactor import Protocol, Reactor
from fastmux.reactor import servers as servers_module
from fastmux.reactor.stream import READ_BUDGET

TIMEOUT = 10.0


class PerIteration(Protocol):
    """Records how many data_received calls each loop iteration made."""

    def __init__(self, loop):
        self.loop = loop
        self.per_iter = {}
        self.data = bytearray()
        self.eof = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        it = self.loop.statistics()["iterations"]
        self.per_iter[it] = self.per_iter.get(it, 0) + 1
        self.data += data

    def eof_received(self):
        self.eof = True
        return True


@pytest.fixture
def small_reads(monkeypatch, stream_module):
    """Make recv small so that a modest amount of data outlasts the read budget
    (transports read MAX_READ of the loop's own twin when they are made)."""
    monkeypatch.setattr(stream_module, "MAX_READ", 256)


def test_budget_exhausted_fd_is_requeued_without_new_edges(loop, socketpair, small_reads):
    """More data than one iteration's budget, sent once: all of it arrives even though
    the kernel reports the fd only once (edge) - the loop re-queues it itself."""
    a, b = socketpair()
    p = PerIteration(loop)
    loop.create_connection(lambda: p, sock=a)
    assert loop.run_until(lambda: p.transport is not None, timeout=TIMEOUT)
    n = 256 * READ_BUDGET * 5
    b.sendall(b"z" * n)  # fits in the socket buffer; no more sends after this
    assert loop.run_until(lambda: len(p.data) == n, timeout=TIMEOUT)
    assert max(p.per_iter.values()) <= READ_BUDGET
    if loop.edge:
        assert max(p.per_iter.values()) == READ_BUDGET
    p.transport.abort()


def test_data_and_fin_together(loop, socketpair):
    """Data and EOF that arrived in one edge: a short read must not end the drain."""
    a, b = socketpair()
    p = PerIteration(loop)
    loop.create_connection(lambda: p, sock=a)
    assert loop.run_until(lambda: p.transport is not None, timeout=TIMEOUT)
    b.sendall(b"last")
    b.shutdown(socket.SHUT_WR)
    assert loop.run_until(lambda: p.eof, timeout=TIMEOUT)
    assert p.data == b"last"
    p.transport.abort()


def test_flooding_peer_does_not_starve_the_others(loop, socketpair, small_reads):
    """One peer writes as fast as it can; another's message still gets through, and the
    flooder never gets more than READ_BUDGET reads in one iteration."""
    fa, fb = socketpair()
    qa, qb = socketpair()
    flood = PerIteration(loop)
    quiet = PerIteration(loop)
    loop.create_connection(lambda: flood, sock=fa)
    loop.create_connection(lambda: quiet, sock=qa)
    assert loop.run_until(lambda: flood.transport and quiet.transport, timeout=TIMEOUT)
    stop = threading.Event()
    fb.settimeout(TIMEOUT)

    def flooder():
        chunk = b"f" * 65536
        try:
            while not stop.is_set():
                fb.sendall(chunk)
        except OSError:
            pass

    t = threading.Thread(target=flooder)
    t.start()
    try:
        assert loop.run_until(lambda: len(flood.data) > 1 << 20, timeout=TIMEOUT)
        qb.sendall(b"still heard")
        assert loop.run_until(lambda: quiet.data == b"still heard", timeout=TIMEOUT)
        assert t.is_alive()  # the flood was still going on
    finally:
        stop.set()
        flood.transport.abort()
        loop.run_until(lambda: False, timeout=0.01)
        t.join(TIMEOUT)
    assert max(flood.per_iter.values()) <= READ_BUDGET
    quiet.transport.abort()


class CountingSelector:
    """An epoll selector that counts registrations (epoll_ctl calls) per fd."""

    def __init__(self):
        self.inner = fsel.EpollSelector()
        self.calls = []

    def register(self, fileobj, events, data=None, *, flags=0):
        self.calls.append(("register", fileobj, events))
        return self.inner.register(fileobj, events, data, flags=flags)

    def modify(self, fileobj, events, data=None, *, flags=None):
        self.calls.append(("modify", fileobj, events))
        return self.inner.modify(fileobj, events, data, flags=flags)

    def unregister(self, fileobj):
        self.calls.append(("unregister", fileobj, None))
        return self.inner.unregister(fileobj)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_write_interest_toggles_without_epoll_ctl_in_edge_mode(socketpair, recorder, edge):
    spy = CountingSelector()
    with Reactor("epoll", edge=edge, selector=spy) as loop:
        a, b = socketpair()
        b.setblocking(False)
        p = recorder()
        transport, _ = loop.create_connection(lambda: p, sock=a)
        assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
        fd = a.fileno()
        for _ in range(3):  # buffer, drain, buffer, drain...
            transport.write(b"w" * (1 << 20))
            assert transport.get_write_buffer_size() > 0
            got = 0
            while got < 1 << 20:
                assert loop.run_until(lambda: False, timeout=0.001) is False
                try:
                    while True:
                        got += len(b.recv(1 << 20))
                except BlockingIOError:
                    pass
            assert loop.run_until(lambda: transport.get_write_buffer_size() == 0, timeout=TIMEOUT)
        mine = [c for c in spy.calls if c[1] == fd]
        if edge:
            assert mine == [("register", fd, fsel.EVENT_READ | fsel.EVENT_WRITE)]
        else:
            assert len([c for c in mine if c[0] == "modify"]) >= 6
        transport.abort()
        assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_accept_budget_then_requeue(loop, closing, recorder):
    """More pending connections than one wake-up's accept budget, and no new ones:
    all are accepted (edge-triggered: only because the listener re-queues itself)."""
    made = []
    server = loop.create_server(lambda: recorder(), "127.0.0.1", 0)
    server._factory = lambda: made.append(1) or recorder()
    n = servers_module.ACCEPT_BUDGET * 2 + 10
    for _ in range(n):
        closing(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
    assert loop.run_until(lambda: len(made) == n, timeout=TIMEOUT)
    server.close()


def test_interrupted_dispatch_loses_no_edge(edge_loop, socketpair):
    """A KeyboardInterrupt out of one protocol leaves the other fds of the same
    ready list re-queued: their consumed edges are not lost."""
    loop = edge_loop

    class Interrupting(PerIteration):
        fired = False

        def data_received(self, data):
            super().data_received(data)
            if not self.fired:
                self.fired = True
                raise KeyboardInterrupt

    pairs = [socketpair() for _ in range(4)]
    protos = [Interrupting(loop) for _ in pairs]
    for (a, _), p in zip(pairs, protos):
        loop.create_connection(lambda p=p: p, sock=a)
    assert loop.run_until(lambda: all(p.transport for p in protos), timeout=TIMEOUT)
    for _, b in pairs:
        b.sendall(b"x" * 1000)
    interrupts = 0
    for _ in range(len(protos) + 1):
        try:
            if loop.run_until(lambda: all(len(p.data) == 1000 for p in protos), timeout=TIMEOUT):
                break
        except KeyboardInterrupt:
            interrupts += 1
    assert all(len(p.data) == 1000 for p in protos)
    assert interrupts == len(protos)
    for p in protos:
        p.transport.abort()


def _epoll_registrations(loop):
    """fd -> event mask, as the kernel has them (/proc/self/fdinfo of the epoll fd)."""
    out = {}
    with open(f"/proc/self/fdinfo/{loop._watch.fileno()}") as f:
        for line in f:
            if line.startswith("tfd:"):
                parts = line.split()
                out[int(parts[1])] = int(parts[3], 16)
    return out


EPOLLET_BIT = 1 << 31
EPOLLEXCLUSIVE_BIT = 1 << 28


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_kernel_sees_the_flags(socketpair, recorder, edge):
    """What the kernel holds: EPOLLIN|EPOLLOUT|EPOLLET once for an edge-triggered
    transport, EPOLLEXCLUSIVE on listening sockets, plain level-triggered user fds."""
    with Reactor("epoll", edge=edge) as loop:
        if not loop._watch.flags_ok:
            pytest.skip("the selector has no flag support")
        server = loop.create_server(recorder, "127.0.0.1", 0)
        a, b = socketpair()
        p = recorder()
        transport, _ = loop.create_connection(lambda: p, sock=a)
        assert loop.run_until(lambda: p.made, timeout=TIMEOUT)
        c, d = socketpair()
        loop.add_reader(c, print)
        regs = _epoll_registrations(loop)
        listen_mask = regs[server.sockets[0].fileno()]
        assert listen_mask & EPOLLEXCLUSIVE_BIT
        assert bool(listen_mask & EPOLLET_BIT) == edge
        tmask = regs[a.fileno()]
        if edge:
            assert tmask & EPOLLET_BIT and tmask & 0x4 and tmask & 0x1  # ET, OUT, IN
        else:
            assert not tmask & EPOLLET_BIT and tmask & 0x1 and not tmask & 0x4
        assert not regs[c.fileno()] & EPOLLET_BIT  # user callbacks: level-triggered always
        loop.remove_reader(c)
        transport.abort()
        server.close()
        assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)


def test_stdlib_selector_runs_level_triggered(socketpair, recorder):
    """Any selectors.BaseSelector works (the stdlib's has no flags: level-triggered only)."""
    import selectors

    with Reactor(selector=selectors.EpollSelector()) as loop:
        assert loop.backend == "epoll" and not loop.edge
        server = loop.create_server(lambda: recorder(echo=True), "127.0.0.1", 0)
        p = recorder()
        t, _ = loop.create_connection(lambda: p, "127.0.0.1", server.port)
        t.write(b"stdlib")
        assert loop.run_until(lambda: p.data == b"stdlib", timeout=TIMEOUT)
        t.close()
        server.close()
        assert loop.run_until(lambda: p.lost, timeout=TIMEOUT)
    sel = selectors.EpollSelector()
    try:
        with pytest.raises(RuntimeError):
            Reactor(edge=True, selector=sel)
    finally:
        sel.close()
