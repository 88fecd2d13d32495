"""Load tools for fastmux's benchmarks.

C programs (built on first use, see :mod:`.build`): ``loadgen``, a load
generator that verifies every echoed byte, and ``echo_floor``, a minimal epoll
echo server that is the floor the Python servers are measured against.  Also
:mod:`.procstat` (a process's CPU time and RSS from ``/proc``) and
:mod:`.reference_servers` (the asyncio, uvloop and stdlib-selectors echo
servers that fastmux is compared with) and :mod:`.harness` (servers and the
load generator as pinned subprocesses, shared by every benchmark harness).
"""
from .build import TOOLS, BuildError, CompilerNotFound, executable

__all__ = ["TOOLS", "BuildError", "CompilerNotFound", "executable"]
