"""``--workers N``: a pre-fork parent that supervises N server processes.

Sharing the port: the parent binds each TCP/UDP address with
``SO_REUSEPORT`` (resolving ``--port 0`` once) and keeps that socket bound
but not listening, which reserves the port without taking connections;
each worker binds its own listening socket to the same address, and the
kernel spreads new connections over the workers' accept queues.  (A worker
that dies loses the connections still in its queue; the others carry on.)
UDP is the exception: a bound UDP socket would receive its share of the
datagrams, so the parent drops its UDP reservations once the first workers
are up.  Unix sockets have no ``SO_REUSEPORT``: the parent listens and the
workers inherit that one socket.

Supervising: workers report readiness on a pipe; the ready line is printed
once all N are up.  A worker that exits on its own is restarted after a
backoff that doubles (0.1 s up to 10 s) while workers keep dying young and
resets once one has lived for 10 s; a worker that dies before ever becoming
ready during start-up means a configuration error, and the parent gives up
(exit 1).  Workers run in their own process group, so a terminal's Ctrl-C
reaches only the parent, which forwards one SIGTERM to each worker (a
second Ctrl-C forwards a second, which workers treat as "now"), waits
``--grace`` plus a margin, then SIGKILLs what is left, and exits 0.  Workers
get SIGTERM if the parent itself dies (``PR_SET_PDEATHSIG``).

The parent waits with ``fastmux.selectors`` on a self-pipe fed by
``signal.set_wakeup_fd``, so signals and readiness are handled in one place.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time
from types import ModuleType
from typing import Callable, Dict, List, Optional

from .. import selectors
from . import _net
from .kinds import is_datagram
from .serving import open_listeners, print_ready, serve

log = logging.getLogger("fastmux.servers")

BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
HEALTHY_AFTER = 10.0  # a worker that lived this long resets the backoff
KILL_MARGIN = 5.0  # after --grace, before SIGKILL
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)


class Supervisor:
    def __init__(self, name: str, mod: ModuleType, opts: argparse.Namespace,
                 on_ready: Callable[[List[str]], None] = print_ready) -> None:
        self.name, self.mod, self.opts = name, mod, opts
        self.on_ready = on_ready
        self.count = opts.workers
        self.udp = is_datagram(mod)
        self.reserved: List[socket.socket] = []  # parent's bound TCP/UDP sockets
        self.bound: List[tuple] = []  # and their addresses
        self.shared: List[socket.socket] = []  # Unix listening sockets, inherited
        self.unix_files: List[_net.UnixCleanup] = []
        self.workers: Dict[int, float] = {}  # pid -> start time
        self.ready: set = set()
        self.announced = False
        self.failures = 0
        self.restart_at: List[float] = []
        self.stopping = False
        self.kill_at: Optional[float] = None
        self.pending_signals: List[int] = []
        self.parent_pid = os.getpid()
        self.exit_code = 0

    # ---- sockets ---------------------------------------------------------
    def reserve(self) -> List[str]:
        socks = open_listeners(self.opts, self.mod, reuse_port=True, listen=False)
        self.shared = [s for s in socks if s.family == socket.AF_UNIX]
        self.unix_files = [_net.UnixCleanup(s) for s in self.shared]
        self.reserved = [s for s in socks if s.family != socket.AF_UNIX]
        # Kept apart from the sockets: the UDP ones close once workers are up.
        self.bound = [s.getsockname() for s in self.reserved]
        return [_net.sock_address(s) for s in socks]

    def worker_sockets(self) -> List[socket.socket]:
        """In a worker: its own SO_REUSEPORT listeners, plus the inherited Unix ones."""
        socks: List[socket.socket] = []
        try:
            for sockaddr in self.bound:  # numeric addresses: each resolves to itself
                socks += _net.bind_inet(sockaddr[0], sockaddr[1], udp=self.udp, reuse_port=True,
                                        listen=self.opts.backlog)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks + [_dup(s) for s in self.shared]

    # ---- processes -------------------------------------------------------
    def spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._worker()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except ValueError as exc:  # bad options (see serving.serve)
                log.error("worker: %s", exc)
                code = 2
            except BaseException:
                log.exception("worker failed")
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        self.workers[pid] = time.monotonic()

    def _worker(self) -> int:
        os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the parent only
        _set_pdeathsig(signal.SIGTERM)
        if os.getppid() != self.parent_pid:  # the parent died before prctl
            return 0
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.close(self.ready_r)
        ready_w = self.ready_w
        socks = self.worker_sockets()
        for sock in self.reserved + self.shared:
            sock.close()

        def on_ready(addresses: List[str]) -> None:
            os.write(ready_w, b"%d\n" % os.getpid())
            os.close(ready_w)

        return serve(self.name, self.mod, self.opts, socks, on_ready, own_unix_files=False)

    def run(self) -> int:
        try:
            addresses = self.reserve()
        except OSError as exc:
            print(f"fastmux serve {self.name}: cannot listen: {exc}", file=sys.stderr)
            return 1
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ready_r, self.ready_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.ready_r, False)
        old_wakeup = signal.set_wakeup_fd(self.wake_w)
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.wake_r, selectors.EVENT_READ)
            sel.register(self.ready_r, selectors.EVENT_READ)
            for _ in range(self.count):
                self.spawn()
            log.info("supervisor %d: %d %s worker(s) started", os.getpid(), self.count, self.name)
            return self._loop(sel, addresses)
        finally:
            sel.close()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            for fd in (self.wake_r, self.wake_w, self.ready_r, self.ready_w):
                _close_fd(fd)
            for unix_file in self.unix_files:
                unix_file.remove()
            for sock in self.reserved + self.shared:
                sock.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.pending_signals.append(signum)

    def _loop(self, sel: selectors.BaseSelector, addresses: List[str]) -> int:
        while True:
            now = time.monotonic()
            deadlines = self.restart_at + ([self.kill_at] if self.kill_at else [])
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            for key, _ in sel.select(timeout):
                if key.fd == self.wake_r:
                    _drain(self.wake_r)
                else:
                    self._read_ready(addresses)
            signals, self.pending_signals = self.pending_signals, []
            for signum in signals:
                if signum in (signal.SIGINT, signal.SIGTERM):
                    self._stop(signum)
            code = self._reap()
            if code is not None:
                return code
            if self.stopping and not self.workers:
                log.info("supervisor: all workers stopped")
                return 0
            now = time.monotonic()
            if not self.stopping:
                due = [t for t in self.restart_at if t <= now]
                self.restart_at = [t for t in self.restart_at if t > now]
                for _ in due:
                    self.spawn()
            if self.kill_at is not None and now >= self.kill_at:
                for pid in list(self.workers):
                    log.warning("supervisor: worker %d still running after the grace period: SIGKILL", pid)
                    _kill(pid, signal.SIGKILL)
                self.kill_at = None

    def _read_ready(self, addresses: List[str]) -> None:
        try:
            data = os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        for line in data.split():
            self.ready.add(int(line))
        if not self.announced and len(self.ready & set(self.workers)) >= self.count:
            self.announced = True
            if self.udp:  # see the module docstring
                for sock in self.reserved:
                    sock.close()
            self.on_ready(addresses)

    def _reap(self) -> Optional[int]:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            started = self.workers.pop(pid, None)
            if started is None:
                continue
            was_ready = pid in self.ready
            self.ready.discard(pid)
            how = _describe(status)
            if self.stopping:
                log.info("supervisor: worker %d exited (%s)", pid, how)
                continue
            if not self.announced and not was_ready:
                log.error("supervisor: worker %d failed to start (%s); giving up", pid, how)
                self._stop(signal.SIGTERM, quiet=True)
                self.exit_code = 1
                continue
            lived = time.monotonic() - started
            self.failures = 0 if lived >= HEALTHY_AFTER else self.failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_START * (2 ** max(0, self.failures - 1))) if self.failures else 0.0
            log.warning("supervisor: worker %d exited (%s) after %.1fs; restarting in %.1fs", pid, how, lived, delay)
            self.restart_at.append(time.monotonic() + delay)
        if self.stopping and not self.workers:
            return self.exit_code
        return None

    def _stop(self, signum: int, quiet: bool = False) -> None:
        if not quiet:
            log.info("supervisor: %s: stopping %d worker(s)%s", signal.Signals(signum).name, len(self.workers),
                     " now" if self.stopping else "")
        if not self.stopping:
            self.stopping = True
            self.restart_at = []
            self.kill_at = time.monotonic() + self.opts.grace + KILL_MARGIN
        for pid in self.workers:
            _kill(pid, signal.SIGTERM)


def _dup(sock: socket.socket) -> socket.socket:
    new = sock.dup()
    new.setblocking(False)
    return new


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def _set_pdeathsig(sig: int) -> None:
    """Linux: deliver ``sig`` to this process when its parent dies (best effort)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno() or errno.EINVAL))
    except (OSError, AttributeError):
        pass


def supervise(name: str, mod: ModuleType, opts: argparse.Namespace,
              on_ready: Callable[[List[str]], None] = print_ready) -> int:
    return Supervisor(name, mod, opts, on_ready).run()
