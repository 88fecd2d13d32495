"""``python nc.py HOST PORT [QUIT_AFTER]``: what the tests used ``nc -q
QUIT_AFTER HOST PORT`` for, with nothing to install.  Sends all of stdin to
HOST:PORT and copies what comes back to stdout, until the server closes or
QUIT_AFTER seconds (default 2) after stdin ended."""
from __future__ import annotations

import selectors
import socket
import sys
import time


def main(host: str, port: int, quit_after: float = 2.0) -> int:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(sys.stdin.buffer.read())
        deadline = time.monotonic() + quit_after
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    continue
                data = sock.recv(65536)
                if not data:
                    break
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:4])))
