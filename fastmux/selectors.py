"""A drop-in, faster replacement for the stdlib :mod:`selectors` module.

``import fastmux.selectors as selectors`` and existing code runs unchanged:
the same classes, keys (``selectors.SelectorKey`` instances), exceptions and
timeout semantics, with ``select()``'s per-event work done in C when the
compiled core is installed.  Beyond the stdlib, ``EpollSelector.register``
and ``modify`` take ``flags`` (``EPOLLET``, ``EPOLLONESHOT``,
``EPOLLEXCLUSIVE``, ``EPOLLRDHUP``), and ``EpollSelector`` is fork-safe.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._impl import chosen, load

if TYPE_CHECKING:
    from ._selectors_py import (
        EPOLLET, EPOLLEXCLUSIVE, EPOLLONESHOT, EPOLLRDHUP, EVENT_READ, EVENT_WRITE,
        BaseSelector, DefaultSelector, EpollSelector, PollSelector, SelectorKey, SelectSelector,
    )
else:
    _mod = load("selectors")
    EVENT_READ = _mod.EVENT_READ
    EVENT_WRITE = _mod.EVENT_WRITE
    SelectorKey = _mod.SelectorKey
    BaseSelector = _mod.BaseSelector
    EpollSelector = _mod.EpollSelector
    PollSelector = _mod.PollSelector
    SelectSelector = _mod.SelectSelector
    DefaultSelector = _mod.DefaultSelector
    EPOLLET = _mod.EPOLLET
    EPOLLONESHOT = _mod.EPOLLONESHOT
    EPOLLEXCLUSIVE = _mod.EPOLLEXCLUSIVE
    EPOLLRDHUP = _mod.EPOLLRDHUP

IMPLEMENTATION: str = chosen("fastmux._selectors_c")

__all__ = [
    # the stdlib's names
    "EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector",
    "EpollSelector", "PollSelector", "SelectSelector", "DefaultSelector",
    # epoll registration flags
    "EPOLLET", "EPOLLONESHOT", "EPOLLEXCLUSIVE", "EPOLLRDHUP",
    "IMPLEMENTATION",
]
