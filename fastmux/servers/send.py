"""``fastmux send FILE HOST:PORT``: upload a file to ``fastmux serve upload``.

Sends ``put|NAME|SIZE\\n``, waits for ``ready``, streams the file with
``os.sendfile`` (no copy through Python), then checks that the server's
``ok SHA256`` matches the file's own SHA-256, which a thread computes while
the bytes are on their way.  A progress bar is drawn on stderr when it is a
terminal.  Exit status: 0 verified, 1 refused or failed, 2 usage.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import stat
import sys
import threading
import time
from typing import List, Optional

from . import _net
from .progress import Progress, human

CHUNK = 8 << 20  # bytes per sendfile call between progress updates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the file to upload")
    parser.add_argument("target", metavar="HOST:PORT", help="the upload server ([::1]:PORT and unix:PATH work too)")
    parser.add_argument("--name", help="name to store it under (default: FILE's base name)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up when the server is silent this long (default: %(default)s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def _sha256_file(path: str, out: List[str]) -> None:
    sha = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            sha.update(block)
    out.append(sha.hexdigest())


def _read_line(sock: socket.socket, limit: int = 4096) -> str:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            break
    return buf.decode("utf-8", "replace").strip()


def _fail(msg: str) -> int:
    print(f"fastmux send: {msg}", file=sys.stderr)
    return 1


def send_file(path: str, target: str, *, name: Optional[str] = None, timeout: float = 60.0,
              progress: bool = True, quiet: bool = False) -> int:
    try:
        f = open(path, "rb")
    except OSError as exc:
        return _fail(f"{path}: {exc.strerror}")
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return _fail(f"{path}: not a regular file")
        size = st.st_size
        name = name if name is not None else os.path.basename(path)
        digest: List[str] = []
        hasher = threading.Thread(target=_sha256_file, args=(path, digest), daemon=True)
        hasher.start()
        try:
            sock = _net.connect(target, timeout=timeout)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot connect to {target}: {exc}")
        with sock:
            try:
                sock.sendall(b"put|" + name.encode("utf-8", "surrogateescape") + b"|%d\n" % size)
                reply = _read_line(sock)
                if reply.startswith("error "):
                    return _fail(f"refused: {reply}")
                if reply != "ready":
                    got = f"it answered {reply[:60]!r}" if reply else "it closed the connection"
                    return _fail(f"{target} did not answer as an upload server ({got}); "
                                 f"is it `fastmux serve upload`?")
                start = time.monotonic()
                sent = 0
                with Progress(size, name[:24], enabled=None if progress and not quiet else False) as bar:
                    try:
                        while sent < size:
                            sent += sock.sendfile(f, sent, min(CHUNK, size - sent))
                            bar.update(sent)
                    except (BrokenPipeError, ConnectionResetError) as exc:
                        bar.finish(sent)
                        why = _read_line_quietly(sock)
                        return _fail(f"server stopped the upload at {sent} bytes: {why or exc}")
                    bar.finish(sent)
                status = _read_line(sock)
                elapsed = time.monotonic() - start
            except socket.timeout:
                return _fail(f"server silent for {timeout:g}s")
            except OSError as exc:
                return _fail(f"{target}: {exc}")
        hasher.join(timeout)
        if not status.startswith("ok "):
            return _fail(status or "connection closed without a status")
        if not digest or status[3:] != digest[0]:
            return _fail(f"SHA-256 mismatch: server {status[3:]}, local {digest[0] if digest else '?'}")
        if not quiet:
            rate = size / elapsed if elapsed > 0 else 0.0
            print(f"sent {name}: {size} bytes in {elapsed:.2f}s ({human(rate)}/s), sha256 {digest[0]} verified")
        return 0


def _read_line_quietly(sock: socket.socket) -> str:
    try:
        sock.settimeout(2.0)
        return _read_line(sock)
    except OSError:
        return ""


def run(args: argparse.Namespace) -> int:
    return send_file(args.file, args.target, name=args.name, timeout=args.timeout,
                     progress=args.progress, quiet=args.quiet)
