"""Low-level pollers: compiled when available, else the pure-Python twin."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._impl import chosen, load

if TYPE_CHECKING:
    from ._pollers_py import BACKENDS, Epoll, Poll, Select
else:
    _mod = load("pollers")
    Epoll = _mod.Epoll
    Poll = _mod.Poll
    Select = _mod.Select
    BACKENDS = _mod.BACKENDS

IMPLEMENTATION: str = chosen("fastmux._pollers_c")
