"""The HTTP access log, in the Common Log Format (as nginx and Apache write it)::

    127.0.0.1 - - [06/Dec/2026:07:37:04 +0000] "GET /index.html HTTP/1.1" 200 5124

The last field is the body's size (``-`` when none, as in Apache).  Lines
go into the file's own buffer and reach the file when it fills (64 KiB)
and once a second (the server's tick), never one ``write`` per request, and
all of them when the server closes.  The time in each line is the
server's once-a-second clock, so it lags by under a second.  While a log is on, ``GET /`` takes the
general path (the hello-world fast path answers without Python, so it
could not be logged).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, BinaryIO, Optional, Union

__all__ = ["AccessLog"]

_BUFFER = 64 * 1024
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


class AccessLog:
    """Appends one Common Log Format line per response to ``target``: a
    path, ``"-"`` for standard output, or an open binary file."""

    def __init__(self, target: Union[str, BinaryIO]) -> None:
        self._owned = True
        if target == "-":
            # Our own buffered handle on fd 1: the ready line and the log
            # never interleave within a line.
            self._file: BinaryIO = os.fdopen(os.dup(sys.stdout.fileno()), "ab", buffering=_BUFFER)
        elif isinstance(target, str):
            self._file = open(target, "ab", buffering=_BUFFER)
        else:
            self._file = target
            self._owned = False
        self._stamp = b""
        self._peer: Any = None
        self._host = b"-"
        self.tick()

    def tick(self) -> None:
        """Once a second (the server's tick): the timestamp lines carry is
        refreshed, and the buffered lines go to the file."""
        t = time.gmtime()
        self._stamp = b"[%02d/%s/%d:%02d:%02d:%02d +0000]" % (
            t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)
        self.flush()

    def record(self, peer: Any, request_line: Optional[bytes], reply: Any) -> None:
        """Log ``reply`` (response bytes, or a FileSend) to ``request_line``
        (``None`` when the request could not be parsed)."""
        if type(reply) is bytes:
            head = reply
            size = len(reply) - reply.find(b"\r\n\r\n") - 4
        else:
            head = reply.head
            size = len(head) - head.find(b"\r\n\r\n") - 4 + reply.count
        if peer is not self._peer:  # one connection's requests come in a row
            self._peer = peer
            self._host = (peer[0] if isinstance(peer, tuple) and peer else str(peer or "-")).encode("latin-1", "replace")
        if request_line is None:
            request_line = b"-"
        elif b'"' in request_line:
            request_line = request_line.replace(b'"', b"%22")
        try:
            self._file.write(b'%s - - %s "%s" %s %s\n' % (
                self._host, self._stamp, request_line, head[9:12], b"%d" % size if size > 0 else b"-"))
        except (OSError, ValueError):
            pass  # a full disk or a closed stdout must not fail the response

    def flush(self) -> None:
        try:
            self._file.flush()
        except (OSError, ValueError):
            pass  # a full disk or a closed stdout must not take the server down

    def close(self) -> None:
        self.flush()
        if self._owned:
            try:
                self._file.close()
            except OSError:
                pass
