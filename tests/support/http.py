"""HTTP test pieces shared by the HTTP and hardening suites."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple


def chunked(body: bytes, sizes: Sequence[int]) -> Tuple[bytes, bytes]:
    """``body`` in chunks of ``sizes`` as chunked transfer coding: (the
    coded bytes, the part of ``body`` that the sizes covered)."""
    raw, pos = b"", 0
    for size in sizes:
        piece = body[pos:pos + size]
        if not piece:
            break
        raw += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos += len(piece)
    return raw + b"0\r\n\r\n", body[:pos]


class FakeTransport:
    """Records writes and state changes; optional native ``sendfile``."""

    def __init__(self, *, sendfile: bool = False, high_water: Optional[int] = None) -> None:
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.high_water = high_water  # simulate pause_writing when buffered over this
        self.buffered = 0
        self.paused = False
        self.protocol: Any = None
        self.writes = 0
        self.extra = {"peername": ("127.0.0.1", 12345), "socket": None}
        if sendfile:
            self.sendfile = self._sendfile  # type: ignore[assignment]
        self.sent_files: List[Tuple[int, int, int]] = []

    def write(self, data: bytes) -> None:
        assert not self.eof_written, "write after write_eof"
        assert isinstance(data, (bytes, bytearray, memoryview))
        self.writes += 1
        self.out += data
        if self.high_water is not None:
            self.buffered += len(data)
            self._check_high()

    def _check_high(self) -> None:
        if not self.paused and self.high_water is not None and self.buffered > self.high_water:
            self.paused = True
            self.protocol.pause_writing()

    def _sendfile(self, fd: Any, offset: int, count: int, *, head: bytes = b"") -> None:
        if head:
            self.write(head)  # as fastmux's transport: the head is written bytes
        fileno = fd if isinstance(fd, int) else fd.fileno()
        self.sent_files.append((fileno, offset, count))
        self.out += os.pread(fileno, count, offset)

    def drain(self) -> None:
        """The peer read everything: buffer empties, writing resumes."""
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.high_water = high
        self._check_high()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
