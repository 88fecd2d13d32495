"""A drop-in for the stdlib ``socketserver`` that waits with fastmux's selector.

``import fastmux.socketserver as socketserver`` and the tutorial's
``ThreadingTCPServer(...).serve_forever()`` runs unchanged: every public
name of the stdlib module is here and behaves the same, but
``serve_forever`` and ``handle_request`` wait on ``fastmux.selectors``
instead of the stdlib's ``selectors.PollSelector``.

How: the stdlib looks its selector up as the module global
``_ServerSelector`` inside ``BaseServer.serve_forever`` and
``handle_request``, so a subclass cannot swap it without repeating those
two methods.  ``BaseServer`` here does repeat them (from CPython 3.11,
unchanged in substance since 3.7), and every server class is re-derived
from it and from its stdlib namesake, ours first (``ThreadingTCPServer``
is ``(TCPServer, socketserver.ThreadingTCPServer)``: the MRO puts our two
methods ahead and keeps the mixin's ahead of ``TCPServer``'s), so
``isinstance(server, socketserver.ThreadingTCPServer)`` holds for the
stdlib class too.  The mixins and request handlers have no selector in
them and are the stdlib's own objects.
"""
from __future__ import annotations

import os
import socket
import socketserver as _std
from socketserver import (  # noqa: F401  (re-exported: the stdlib's own classes)
    BaseRequestHandler,
    DatagramRequestHandler,
    StreamRequestHandler,
    ThreadingMixIn,
)
from time import monotonic as time

from . import selectors

__all__ = list(_std.__all__)

# Mirrors the stdlib's choice (poll() where it exists), from fastmux.
if hasattr(selectors, "PollSelector"):
    _ServerSelector = selectors.PollSelector
else:  # pragma: no cover - every Linux has poll()
    _ServerSelector = selectors.SelectSelector


class BaseServer(_std.BaseServer):
    __doc__ = _std.BaseServer.__doc__

    def serve_forever(self, poll_interval=0.5):
        """Handle one request at a time until shutdown.

        Polls for shutdown every poll_interval seconds. Ignores
        self.timeout. If you need to do periodic tasks, do them in
        another thread.
        """
        self._BaseServer__is_shut_down.clear()
        try:
            with _ServerSelector() as selector:
                selector.register(self, selectors.EVENT_READ)

                while not self._BaseServer__shutdown_request:
                    ready = selector.select(poll_interval)
                    # bpo-35017: shutdown() called during select(), exit immediately.
                    if self._BaseServer__shutdown_request:
                        break
                    if ready:
                        self._handle_request_noblock()

                    self.service_actions()
        finally:
            self._BaseServer__shutdown_request = False
            self._BaseServer__is_shut_down.set()

    def handle_request(self):
        """Handle one request, possibly blocking.

        Respects self.timeout.
        """
        timeout = self.socket.gettimeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        if timeout is not None:
            deadline = time() + timeout

        with _ServerSelector() as selector:
            selector.register(self, selectors.EVENT_READ)

            while True:
                ready = selector.select(timeout)
                if ready:
                    return self._handle_request_noblock()
                else:
                    if timeout is not None:
                        timeout = deadline - time()
                        if timeout < 0:
                            return self.handle_timeout()


class TCPServer(BaseServer, _std.TCPServer):
    __doc__ = _std.TCPServer.__doc__


class UDPServer(TCPServer, _std.UDPServer):
    __doc__ = _std.UDPServer.__doc__


class ThreadingUDPServer(UDPServer, _std.ThreadingUDPServer):
    pass


class ThreadingTCPServer(TCPServer, _std.ThreadingTCPServer):
    pass


if hasattr(os, "fork"):
    from socketserver import ForkingMixIn  # noqa: F401

    class ForkingUDPServer(UDPServer, _std.ForkingUDPServer):
        pass

    class ForkingTCPServer(TCPServer, _std.ForkingTCPServer):
        pass


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(TCPServer, _std.UnixStreamServer):
        pass

    class UnixDatagramServer(UDPServer, _std.UnixDatagramServer):
        pass

    class ThreadingUnixStreamServer(UnixStreamServer, _std.ThreadingUnixStreamServer):
        pass

    class ThreadingUnixDatagramServer(UnixDatagramServer, _std.ThreadingUnixDatagramServer):
        pass

    if hasattr(os, "fork") and hasattr(_std, "ForkingUnixStreamServer"):  # Python 3.12+

        class ForkingUnixStreamServer(UnixStreamServer, _std.ForkingUnixStreamServer):
            pass

        class ForkingUnixDatagramServer(UnixDatagramServer, _std.ForkingUnixDatagramServer):
            pass


def __getattr__(name: str):
    # Anything else the stdlib module exposes (its imports, __version__, ...).
    try:
        return getattr(_std, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
