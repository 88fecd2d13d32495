"""A one-line progress bar for long client work, drawn only on a terminal."""
from __future__ import annotations

import sys
import time
from typing import IO, Optional


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class Progress:
    """``update(done)`` redraws at most ten times a second; off when not a tty.

    ``finish(done)`` draws the last state and ends the line.  Used as a
    context manager, it also ends the line when the work stops early (an
    error, Ctrl-C), so what is printed next starts on a line of its own.
    """

    def __init__(self, total: int, label: str = "", stream: Optional[IO[str]] = None,
                 enabled: Optional[bool] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled)
        self.total = max(total, 0)
        self.label = label
        self.width = width
        self.start = time.monotonic()
        self._drawn = 0.0
        self._shown = False  # a bar is drawn on a line not ended yet

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        frac = done / self.total if self.total else 1.0
        fill = int(frac * self.width)
        rate = done / max(now - self.start, 1e-9)
        bar = "#" * fill + "-" * (self.width - fill)
        self.stream.write(f"\r{self.label} [{bar}] {frac * 100:5.1f}% {human(done)}/{human(self.total)} "
                          f"{human(rate)}/s ")
        self.stream.flush()
        self._shown = True

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        self._end_line()

    def _end_line(self) -> None:
        if self._shown:
            self._shown = False
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end_line()
