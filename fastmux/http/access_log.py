"""The HTTP access log, in the Common Log Format (as nginx and Apache write it)::

    127.0.0.1 - - [06/Dec/2026:07:37:04 +0000] "GET /index.html HTTP/1.1" 200 5124

The last field is the body's size (``-`` when none, as in Apache).  Lines
go into the file's own buffer and reach the file when it fills (64 KiB)
and once a second (the server's tick), never one ``write`` per request, and
all of them when the server closes.  While a log is on, ``GET /`` takes the
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
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            t = time.gmtime(second)
            self._stamp = (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]")
            self._second = second
        return self._stamp

    def record(self, peer: Any, request_line: Optional[bytes], reply: Any) -> None:
        """Log ``reply`` (response bytes, or a FileSend) to ``request_line``
        (``None`` when the request could not be parsed)."""
        head = reply if isinstance(reply, bytes) else reply.head
        end = head.find(b"\r\n\r\n") + 4
        if isinstance(reply, bytes):
            size = len(reply) - end
        else:
            size = len(head) - end + reply.count
        host = peer[0] if isinstance(peer, tuple) and peer else (peer or "-")
        line = "-" if request_line is None else request_line.decode("latin-1").replace('"', "%22")
        text = f'{host} - - {self._now()} "{line}" {head[9:12].decode("ascii")} {size if size > 0 else "-"}\n'
        try:
            self._file.write(text.encode("latin-1", "replace"))
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
