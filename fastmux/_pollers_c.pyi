"""Type stubs for the compiled pollers; the behaviour is documented in
``fastmux._pollers_py``, the pure-Python twin with the same interface."""
from typing import Any, List, Optional, Tuple

BACKENDS: Tuple[str, ...]
EPOLLIN: int
EPOLLPRI: int
EPOLLOUT: int
EPOLLERR: int
EPOLLHUP: int
EPOLLRDHUP: int
EPOLLRDNORM: int
EPOLLRDBAND: int
EPOLLWRNORM: int
EPOLLWRBAND: int
EPOLLMSG: int
EPOLLEXCLUSIVE: int
EPOLLWAKEUP: int
EPOLLONESHOT: int
EPOLLET: int
POLLIN: int
POLLPRI: int
POLLOUT: int
POLLERR: int
POLLHUP: int
POLLNVAL: int
POLLRDHUP: int
FD_SETSIZE: int

class Poller:
    """Base of the three pollers; not instantiable on its own."""
    def register(self, fd: Any, eventmask: int = ...) -> None:
        """Watch ``fd`` (an int or an object with ``fileno()``) for ``eventmask``."""
    def modify(self, fd: Any, eventmask: int) -> None:
        """Change the events watched on a registered ``fd``."""
    def unregister(self, fd: Any) -> None:
        """Stop watching ``fd``."""
    def poll(self, timeout: Optional[float] = None, maxevents: int = -1) -> List[Tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None or negative: forever); ``[(fd, events)]``."""
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Poller": ...
    def __exit__(self, *exc_info: Any) -> None: ...

class Epoll(Poller):
    """An epoll instance created with EPOLL_CLOEXEC."""
    def fileno(self) -> int: ...

class Poll(Poller):
    """A poll(2) set."""

class Select(Poller):
    """A select(2) set: fds below FD_SETSIZE only."""
