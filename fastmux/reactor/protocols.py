"""Protocols: the callbacks a transport makes, in the asyncio shape.

Subclass :class:`Protocol` (streams) or :class:`DatagramProtocol` and
override what you need; every method has a do-nothing default.  The reactor
only duck-types, so ``asyncio.Protocol`` subclasses work unchanged, and the
``typing.Protocol`` classes below describe the callbacks for type checkers
(as httptools' ``HTTPProtocol`` does for its parser callbacks).

Call order for a stream: ``connection_made`` once, then ``data_received``
any number of times, then at most one ``eof_received``, then
``connection_lost`` exactly once.  ``pause_writing``/``resume_writing``
alternate, starting with ``pause_writing``, whenever the transport's write
buffer crosses its high/low water marks.

Two fastmux rules differ from asyncio, both for speed:

* ``data_received`` (``datagram_received`` for datagrams) is looked up once,
  right after ``connection_made`` returns, and the bound method is kept: a
  protocol may even set ``self.data_received = transport.write`` in
  ``connection_made`` to echo with no frame of its own.  Call
  ``transport.set_protocol(self)`` again if you rebind it later.
* A connection started by ``create_connection`` that never connects calls
  neither ``connection_made`` nor ``connection_lost`` (there was no
  connection): it calls the protocol's optional ``connection_failed(exc)``
  exactly once, or, if the protocol has no such method, reports ``exc``
  through the reactor's exception handler.
"""
from __future__ import annotations

from typing import Any, Optional

try:  # typing.Protocol is 3.8+; fastmux supports 3.9+
    from typing import Protocol as _TypingProtocol
except ImportError:  # pragma: no cover
    _TypingProtocol = object  # type: ignore[assignment,misc]

__all__ = [
    "BaseProtocol",
    "Protocol",
    "DatagramProtocol",
    "StreamCallbacks",
    "DatagramCallbacks",
    "ConnectionFailedCallback",
]


class BaseProtocol:
    """Callbacks common to streams and datagrams."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        """The transport is ready; keep a reference to it."""

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        """The connection is closed: ``exc`` is None for a normal close or EOF."""

    def pause_writing(self) -> None:
        """The write buffer went over the high-water mark: stop producing."""

    def resume_writing(self) -> None:
        """The write buffer drained to the low-water mark: produce again."""


class Protocol(BaseProtocol):
    """Stream callbacks (TCP, Unix sockets)."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        """Some bytes arrived (``data`` is never empty)."""

    def eof_received(self) -> Optional[bool]:
        """The peer shut down its sending side.

        Return a true value to keep the connection half-open (you may still
        write, then ``close()``); otherwise the transport closes itself.
        """
        return None


class DatagramProtocol(BaseProtocol):
    """Datagram callbacks (UDP, Unix datagram sockets)."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """One datagram arrived from ``addr``."""

    def error_received(self, exc: Exception) -> None:
        """A send or receive failed (e.g. ICMP port unreachable); not fatal."""


class StreamCallbacks(_TypingProtocol):
    """What a stream transport calls; any object with these methods will do."""

    def connection_made(self, transport: Any) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> Optional[bool]: ...

    def connection_lost(self, exc: Optional[BaseException]) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class DatagramCallbacks(_TypingProtocol):
    """What a datagram transport calls."""

    def connection_made(self, transport: Any) -> None: ...

    def datagram_received(self, data: bytes, addr: Any) -> None: ...

    def error_received(self, exc: Exception) -> None: ...

    def connection_lost(self, exc: Optional[BaseException]) -> None: ...


class ConnectionFailedCallback(_TypingProtocol):
    """Optional on protocols given to ``create_connection``: the connect failed."""

    def connection_failed(self, exc: BaseException) -> None: ...
