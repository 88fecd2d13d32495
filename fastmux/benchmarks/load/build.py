"""Compile the C load tools on first use and cache the executables.

The sources ship in the wheel as package data; building them at run time with
the system compiler keeps the wheel free of per-platform binaries for what is
only a benchmarking aid.  The cache key is a hash of the source, the compiler
and the flags, so an edited source or a different ``CC`` builds afresh and a
stale binary is never run.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List

__all__ = ["BuildError", "CompilerNotFound", "executable", "TOOLS"]

TOOLS = ("loadgen", "echo_floor")
CFLAGS = ["-O2", "-Wall", "-Wextra"]
_SOURCE_DIR = Path(__file__).resolve().parent


class BuildError(RuntimeError):
    """A load tool could not be compiled."""


class CompilerNotFound(BuildError):
    """No C compiler: set CC or install one (gcc or clang)."""


def _compiler() -> List[str]:
    cc = os.environ.get("CC")
    if cc:
        return shlex.split(cc)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerNotFound(
        "fastmux's load tools are C programs built on first use, and no C compiler "
        "was found: install gcc or clang, or set CC"
    )


def _cache_root() -> Path:
    explicit = os.environ.get("FASTMUX_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastmux"


def executable(name: str) -> Path:
    """Return the path of the compiled tool ``name``, building it if needed."""
    if name not in TOOLS:
        raise ValueError(f"unknown load tool {name!r}; known: {', '.join(TOOLS)}")
    source = _SOURCE_DIR / f"{name}.c"
    cc = _compiler()
    key = hashlib.sha256()
    for part in (source.read_bytes(), "\0".join(cc + CFLAGS).encode()):
        key.update(part)
    target_dir = _cache_root() / key.hexdigest()[:16]
    target = target_dir / name
    if target.exists():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    # Build under a temporary name and rename: concurrent first uses (parallel
    # test runs) never see a half-written binary.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=target_dir)
    os.close(fd)
    try:
        try:
            proc = subprocess.run(
                [*cc, *CFLAGS, "-o", tmp, str(source)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
            )
        except FileNotFoundError:
            raise CompilerNotFound(f"the C compiler {cc[0]!r} (from CC) was not found") from None
        if proc.returncode != 0:
            raise BuildError(f"compiling {source.name} failed:\n{proc.stdout}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
