"""The request parser's exceptions.

The pure-Python twin parses with httptools, so when httptools is installed
these are its classes and ``except httptools.HttpParserError`` keeps working
whichever twin runs.  The compiled parser raises the same names and needs
nothing from httptools: without it, the classes below (same hierarchy) are
used.
"""
from __future__ import annotations

__all__ = [
    "HttpParserError",
    "HttpParserCallbackError",
    "HttpParserInvalidStatusError",
    "HttpParserInvalidMethodError",
    "HttpParserInvalidURLError",
    "HttpParserUpgrade",
]

try:
    from httptools import (
        HttpParserCallbackError,
        HttpParserError,
        HttpParserInvalidMethodError,
        HttpParserInvalidStatusError,
        HttpParserInvalidURLError,
        HttpParserUpgrade,
    )
except ImportError:

    class HttpParserError(Exception):  # type: ignore[no-redef]
        """The request is not valid HTTP/1.x."""

    class HttpParserCallbackError(HttpParserError):  # type: ignore[no-redef]
        """A parser callback raised."""

    class HttpParserInvalidStatusError(HttpParserError):  # type: ignore[no-redef]
        """Invalid status line (responses only)."""

    class HttpParserInvalidMethodError(HttpParserError):  # type: ignore[no-redef]
        """Unknown or malformed method."""

    class HttpParserInvalidURLError(HttpParserError):  # type: ignore[no-redef]
        """Malformed request target."""

    class HttpParserUpgrade(Exception):  # type: ignore[no-redef]
        """The request upgrades the connection; the argument is the offset of the
        first byte after the head."""
