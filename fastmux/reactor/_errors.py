"""Which errors are a peer's doing (quiet) and which are worth a traceback.

A peer that resets, vanishes or refuses is normal life for a server: such
errors end the connection with ``connection_lost(exc)`` and are logged at
DEBUG only.  Anything else (EBADF, ENOTSOCK, a bug) goes to the reactor's
exception handler with a traceback.
"""
from __future__ import annotations

import errno

QUIET_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNRESET", "EPIPE", "ESHUTDOWN", "ECONNABORTED", "ECONNREFUSED", "ETIMEDOUT",
        "ENOTCONN", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "ENETRESET",
    )
    if hasattr(errno, name)
)

# accept() failures that mean "out of a resource", not "this connection is bad":
# the server pauses accepting instead of retrying at once (which would spin).
ACCEPT_RESOURCE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM") if hasattr(errno, name)
)

# accept() failures caused by the one connection being accepted (it died in the
# backlog, or a protocol error): skip it and accept the next one.
ACCEPT_SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ECONNABORTED", "EPROTO", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
                 "EOPNOTSUPP", "ENETUNREACH", "EPERM")
    if hasattr(errno, name)
)

# os.sendfile() cannot do this (file, socket) pair: fall back to pread+send.
SENDFILE_FALLBACK_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EINVAL", "ENOSYS", "ENOTSUP", "EOPNOTSUPP", "ENOTSOCK", "EOVERFLOW")
    if hasattr(errno, name)
)


def is_quiet(exc: BaseException) -> bool:
    """True for errors that end a connection without deserving a traceback."""
    return isinstance(exc, OSError) and exc.errno in QUIET_ERRNOS
