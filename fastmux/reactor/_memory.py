"""Give memory back to the system after a burst of connections.

Thousands of connections leave CPython's and glibc's allocators holding
their high-water mark (about 1.3 KiB per connection) long after the
connections are gone.  A server whose connection count falls to zero after
such a burst collects garbage and asks glibc to return free pages, so its
RSS goes back near where it started.  Only after a large peak: a
collection per idle moment would cost churn-heavy servers real CPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Callable, Optional

RELEASE_AFTER_PEAK = 1024  # connections


def _load_malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def release_memory() -> None:
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
