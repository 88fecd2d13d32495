"""Upload benchmark: ``fastmux serve upload`` against the tutorial's design and socketserver.

    python bench/upload_bench.py                    # 256 MiB, 3 runs per server
    python bench/upload_bench.py --gib              # the 1 GiB target
    python bench/upload_bench.py --size 64 --runs 1 # smoke
    python bench/upload_bench.py --servers fastmux,tutorial --json out.json

Servers (each a subprocess, pinned to CPU 0; the client, this process, to CPU 1):

* ``fastmux``          ``fastmux serve upload``: SHA-256, fsync, atomic commit
                       (``--write-mode inline``: chunks written on the loop).
* ``fastmux-thread``   the same with ``--write-mode thread`` (batches hashed and
                       written in the thread pool while the loop receives).
* ``fastmux-nofsync``  inline, ``--no-fsync``: what the design costs without the
                       durability the baselines do not have either.
* ``socketserver``     a plain stdlib ``socketserver.ThreadingTCPServer`` with the
                       same protocol and guarantees (recv_into 256 KiB, SHA-256,
                       fsync, atomic commit): the obvious blocking design.
* ``tutorial``         the tutorial's server ported to Python 3: ``recv(1024)``
                       and ``f.write`` per chunk, no hash, no fsync, no checks.

Figures per server, medians over the runs: throughput (file size over the
time from connect to the server's final answer -- for the tutorial, which
sends none, to the server closing the connection) and the server's CPU time
(user+system, all its threads, from /proc) per GiB.  Every upload is checked
byte for byte (SHA-256 of the stored file).  The client uses ``sendfile``, so
client-side CPU is mostly kernel copy.  Disk speed enters through fsync: run
on tmpfs (``--dir /dev/shm/...``) to take the disk out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

# Run against this checkout's fastmux, whether or not one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmux.benchmarks.load.harness import start_announced, stop  # noqa: E402
from fastmux.benchmarks.load.procstat import cpu_times  # noqa: E402

SOCKETSERVER_SERVER = r'''
import hashlib, os, socketserver, sys, tempfile

DIR = sys.argv[1]

class Upload(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        head = b""
        while not head.endswith(b"\n"):
            c = conn.recv(1)
            if not c:
                return
            head += c
        cmd, name, size = head.strip().split(b"|")
        name, size = os.path.basename(name.decode()), int(size)
        final = os.path.join(DIR, name)
        if os.path.exists(final):
            conn.sendall(b"error exists\n")
            return
        conn.sendall(b"ready\n")
        fd, tmp = tempfile.mkstemp(dir=DIR, prefix=".ss-")
        sha = hashlib.sha256()
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        left = size
        try:
            while left:
                n = conn.recv_into(view[:min(left, len(buf))])
                if not n:
                    raise ConnectionError("short")
                sha.update(view[:n])
                os.write(fd, view[:n])
                left -= n
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.link(tmp, final)
        os.unlink(tmp)
        conn.sendall(b"ok " + sha.hexdigest().encode() + b"\n")

socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upload) as srv:
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()
'''

# The tutorial's FTP upload server (SocketServer, recv(1024)), ported to
# Python 3; the one addition is `if not pre_data: break` so a finished client
# does not raise in split().
TUTORIAL_SERVER = r'''
import socketserver
import os
import sys

class MyServer(socketserver.BaseRequestHandler):
    def handle(self):
        base_path = sys.argv[1]
        conn = self.request
        while True:
            pre_data = conn.recv(1024).decode()
            if not pre_data:
                break
            cmd, file_name, file_size = pre_data.split('|')
            conn.sendall(b'nothing')
            recv_size = 0
            file_dir = os.path.join(base_path, file_name)
            f = open(file_dir, 'wb')
            Flag = True
            while Flag:
                if int(file_size) > recv_size:
                    data = conn.recv(1024)
                    recv_size += len(data)
                    f.write(data)
                else:
                    recv_size = 0
                    Flag = False
            f.close()

instance = socketserver.ThreadingTCPServer(('127.0.0.1', 0), MyServer)
print("listening on 127.0.0.1:%d" % instance.server_address[1], flush=True)
instance.serve_forever()
'''

SERVERS = {
    "fastmux": ("fastmux", []),
    "fastmux-thread": ("fastmux", ["--write-mode", "thread"]),
    "fastmux-nofsync": ("fastmux", ["--no-fsync"]),
    "socketserver": ("script", SOCKETSERVER_SERVER),
    "tutorial": ("script", TUTORIAL_SERVER),
}


def start_server(name: str, updir: str, pin: bool) -> Tuple[subprocess.Popen, int]:
    kind, extra = SERVERS[name]
    if kind == "fastmux":
        argv = [sys.executable, "-m", "fastmux", "serve", "upload", "--port", "0", "--dir", updir,
                "--max-size", "64G", "--log-level", "warning", *extra]
    else:
        argv = [sys.executable, "-c", extra, updir]
    return start_announced(name, argv, 0 if pin else None)


def _line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            break
        buf += c
    return buf


def upload_once(name: str, port: int, src: Path, size: int, target: str) -> float:
    """One upload; returns seconds from connect to the server's final answer."""
    with open(src, "rb") as f:
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
            if name == "tutorial":
                s.sendall(f"put|{target}|{size}".encode())
                s.recv(1024)  # 'nothing'
                s.sendfile(f, 0, size)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):  # it closes once the file is written
                    pass
            else:
                s.sendall(f"put|{target}|{size}\n".encode())
                ack = _line(s)
                if ack != b"ready\n":
                    raise RuntimeError(f"{name}: {ack!r}")
                s.sendfile(f, 0, size)
                status = _line(s)
                if not status.startswith(b"ok "):
                    raise RuntimeError(f"{name}: {status!r}")
        return time.perf_counter() - t0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bench(name: str, src: Path, digest: str, size: int, runs: int, updir: Path, pin: bool) -> Dict:
    proc, port = start_server(name, str(updir), pin)
    rates, cpus = [], []
    try:
        for i in range(runs):
            target = f"bench-{i}.bin"
            before = cpu_times(proc.pid)
            seconds = upload_once(name, port, src, size, target)
            used = cpu_times(proc.pid) - before
            stored = updir / target
            deadline = time.monotonic() + 30
            while (not stored.exists() or stored.stat().st_size < size) and time.monotonic() < deadline:
                time.sleep(0.01)
            if sha256_file(stored) != digest:
                raise RuntimeError(f"{name}: stored file differs")
            stored.unlink()
            rates.append(size / seconds / (1 << 20))
            cpus.append(used.total / (size / (1 << 30)))
            print(f"  {name:16s} run {i + 1}: {rates[-1]:7.0f} MiB/s, server CPU {cpus[-1]:.2f} s/GiB "
                  f"(user {used.user:.2f}s sys {used.system:.2f}s)", file=sys.stderr)
    finally:
        stop(proc, timeout_s=30)
    return {"server": name, "mib_s": statistics.median(rates), "cpu_s_per_gib": statistics.median(cpus),
            "runs": runs, "all_mib_s": rates, "all_cpu_s_per_gib": cpus}


def main() -> int:
    parser = argparse.ArgumentParser(prog="upload_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, metavar="MIB", help="file size in MiB (default 256)")
    parser.add_argument("--gib", action="store_true", help="1 GiB file (the issue's target)")
    parser.add_argument("--runs", type=int, default=3, help="uploads per server (median reported)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}")
    parser.add_argument("--dir", help="where the source file and uploads go (default: a temp dir)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server/client CPUs")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    size = (1 << 30) if args.gib else args.size << 20
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    for n in names:
        if n not in SERVERS:
            parser.error(f"unknown server {n!r}")
    pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="fastmux-upload-bench-", dir=args.dir))
    try:
        src = work / "source.bin"
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
            f.write(block[: size & ((1 << 20) - 1)])
        digest = sha256_file(src)
        print(f"upload benchmark: {size / (1 << 20):.0f} MiB file, {args.runs} run(s) per server, "
              f"{'server on CPU 0, client on CPU 1' if pin else 'no pinning'}, dir {work}", file=sys.stderr)
        results = []
        for name in names:
            updir = work / name
            updir.mkdir()
            results.append(bench(name, src, digest, size, args.runs, updir, pin))
            shutil.rmtree(updir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = next((r for r in results if r["server"] == "tutorial"), None)
    print(f"\n{'server':18s} {'MiB/s':>8s} {'CPU s/GiB':>10s}  {'vs tutorial (speed, CPU)':>24s}")
    for r in results:
        vs = ""
        if base and r is not base:
            vs = f"x{r['mib_s'] / base['mib_s']:.2f}, x{r['cpu_s_per_gib'] / base['cpu_s_per_gib']:.2f}"
        print(f"{r['server']:18s} {r['mib_s']:8.0f} {r['cpu_s_per_gib']:10.2f}  {vs:>24s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "pinned": pin, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
