"""``fastmux bench http``: an HTTP server's own CPU time per request,
``fastmux serve http`` against uvloop/asyncio + httptools, nginx and
``http.server`` -- applications first, then hello world and static files,
and uvicorn + Starlette on each asyncio event loop.

On a 2-core machine ``wrk`` saturates its core before a fast server does,
so requests/s bunch together and say little.  The primary figure is the CPU
time the server process (for nginx: master and worker) spends per request,
user and user+system, read from /proc/<pid>/stat over exactly the measured
``wrk`` run and divided by the requests it completed.  Requests/s and
p50/p99 latency are shown beside it.

Workloads (``--workloads``), each saying which path of fastmux it exercises:

``app``, ``json``, ``post``
    A Python application (``fastmux serve http --app``), the path every
    real request takes: ``app`` returns the constant ``200, [("Content-Type",
    "text/plain; charset=utf-8")], b"Hello, World"`` (:func:`app_plain`);
    ``json`` returns ``json.dumps`` of a small dict with the request's path
    and its ``User-Agent`` (:func:`app_json`); ``post`` echoes a 1 KiB POST
    body (:func:`app_post`).  Anchors: the *same* application functions run
    by uvloop, by asyncio and by ``fastmux.asyncio`` (whatever
    ``fastmux.asyncio.new_event_loop()`` returns) through one httptools
    ``asyncio.Protocol`` as a competent user writes it (a request object with
    ``__slots__``, Server and a Date cached per second, Content-Length, the
    app's headers, keep-alive).
``hello``
    ``GET /`` answered with ``Hello, World`` (text/plain; charset=utf-8,
    Content-Length, Date), keep-alive: fastmux answers it in C, inside the
    parser, running no Python -- no application reaches this path.
    Servers: fastmux; uvloop, asyncio and fastmux.asyncio
    running a raw httptools protocol written the way a competent user would
    (parse with httptools, write a prebuilt response with a Date cached per
    second); nginx (``return 200``); ``http.server`` (ThreadingHTTPServer,
    HTTP/1.1).
``static-1k``, ``static-1m``
    ``GET`` of a 1 KiB / 1 MiB file from a directory: ``fastmux serve http
    --dir``, nginx (``root``, sendfile on), ``http.server``
    (SimpleHTTPRequestHandler, HTTP/1.1).
``uvicorn``
    ``GET /plaintext`` from a Starlette app (one ``PlainTextResponse``
    route, :func:`starlette_app`) served by ``uvicorn --http httptools
    --no-access-log`` with ``--loop`` asyncio, uvloop and
    ``fastmux.asyncio:new_event_loop``, ``wrk -c50`` unless ``--connections``
    says otherwise; the CPU is that of uvicorn's whole process tree.  Only when
    uvicorn, Starlette and httptools are installed.

Method: every server runs pinned to CPU 0 and ``wrk -t1`` to CPU 1
(``--no-pin`` to disable); each run is a fresh server, a short unmeasured
warm-up ``wrk``, then the measured ``wrk``; rounds are interleaved (every
server once per workload per round) and the table shows medians.  Each
server's answer is checked once (status, body) before it is measured.
nginx is started with a generated configuration in a temporary directory:
one worker, ``access_log off``, ``daemon off``, pid and logs in that
directory, ``keepalive_requests`` raised so that wrk's connections stay up
for the whole run as they do with the other servers.
"""
from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .load.harness import (RunFailed, child_env, csv_choices, median_of, pick_cpus, pinned, running_on,
                                  running_server, uvloop_installed)
from .load.procstat import CLOCK_TICK_S, CpuTimes, cpu_times
from .load.reference_servers import LOOPS, new_event_loop

# fastmux-log: fastmux with --access-log (to a file), to show what the log costs.
# uvloop, asyncio and fastmux.asyncio are the event loops (LOOPS) running the same Python code.
SERVERS = ("fastmux", "fastmux-log", "uvloop", "asyncio", "fastmux.asyncio", "nginx", "httpserver")
WORKLOADS = ("app", "json", "post", "hello", "static-1k", "static-1m", "uvicorn")
STATIC_FILES = {"static-1k": ("1k.bin", 1024), "static-1m": ("1m.bin", 1 << 20)}
_APP_SERVERS = ("fastmux", "uvloop", "asyncio", "fastmux.asyncio")
# Which servers take part in which workload (the raw protocols answer only "/").
SUPPORTS = {
    "app": _APP_SERVERS + ("fastmux-log",),
    "json": _APP_SERVERS,
    "post": _APP_SERVERS,
    "hello": ("fastmux", "fastmux-log", "uvloop", "asyncio", "fastmux.asyncio", "nginx", "httpserver"),
    "static-1k": ("fastmux", "nginx", "httpserver"),
    "static-1m": ("fastmux", "nginx", "httpserver"),
    "uvicorn": LOOPS,
}
# The application workloads: the function every server runs, the path asked for.
APPS = {"app": ("app_plain", "/plaintext"), "json": ("app_json", "/json"), "post": ("app_post", "/echo")}
# uvicorn's --loop for each event loop: a name it knows, or an import string of a loop factory.
UVICORN_LOOPS = {"asyncio": "asyncio", "uvloop": "uvloop", "fastmux.asyncio": "fastmux.asyncio:new_event_loop"}
UVICORN_PATH = "/plaintext"
# wrk's connections where --connections is not given: the uvicorn workload is
# compared at the concurrency its published figures use.
DEFAULT_CONNECTIONS = 100
WORKLOAD_CONNECTIONS = {"uvicorn": 50}
POST_BODY = b"x" * 1024
USER_AGENT = "fastmux-bench"
# wrk sends no User-Agent by default; json reads it and post sends a body.
_WRK_SCRIPT = 'wrk.headers["User-Agent"] = "%s"\n' % USER_AGENT
_WRK_POST = """\
wrk.method = "POST"
wrk.body = string.rep("x", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
""" % len(POST_BODY)


# ---- the applications (the same functions for fastmux and the anchors) ----


def app_plain(request: Any) -> Any:
    return 200, [("Content-Type", "text/plain; charset=utf-8")], b"Hello, World"


def app_json(request: Any) -> Any:
    body = json.dumps({"path": request.path, "user_agent": request.get_header("user-agent")})
    return 200, [("Content-Type", "application/json")], body


def app_post(request: Any) -> Any:
    return 200, [("Content-Type", "application/octet-stream")], request.body


def starlette_app() -> Any:
    """The uvicorn workload's application (``uvicorn --factory``): one plaintext route."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def plaintext(request: Any) -> PlainTextResponse:
        return PlainTextResponse("Hello, World")

    return Starlette(routes=[Route(UVICORN_PATH, plaintext)])


def uvicorn_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("uvicorn", "starlette", "httptools"))


def available_workloads() -> List[str]:
    return [w for w in WORKLOADS if w != "uvicorn" or uvicorn_installed()]


def available_servers() -> List[str]:
    out = []
    for name in SERVERS:
        if name == "uvloop" and not uvloop_installed():
            continue
        if name == "nginx" and shutil.which("nginx") is None:
            continue
        out.append(name)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workloads", type=csv_choices(WORKLOADS), default=None, metavar="A,B",
                        help=f"from {', '.join(WORKLOADS)} (default: all; uvicorn only when uvicorn, "
                             "starlette and httptools are installed)")
    parser.add_argument("--servers", type=csv_choices(SERVERS), default=None, metavar="A,B",
                        help=f"from {', '.join(SERVERS)} (default: all that are installed)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown (default 3)")
    parser.add_argument("--connections", type=int, default=None,
                        help=f"wrk connections (default {DEFAULT_CONNECTIONS}; uvicorn {WORKLOAD_CONNECTIONS['uvicorn']})")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and wrk to CPUs 0 and 1")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every run and the medians here")


# ---- the reference servers (run as: python -m fastmux.benchmarks.http serve KIND ...) ----


def _new_loop(kind: str) -> Any:
    import asyncio

    loop = new_event_loop(kind)
    asyncio.set_event_loop(loop)
    return loop


def _serve_forever(loop: Any, protocol: Any, host: str, port: int) -> None:
    server = loop.run_until_complete(loop.create_server(protocol, host, port, backlog=4096))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    print(f"listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    loop.run_forever()


def _httptools_protocol() -> type:
    """The part of the anchors' httptools protocols that does not depend on
    the workload: a parser per connection, 400 and close on a parse error."""
    import asyncio

    import httptools

    class HttptoolsProtocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data):
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()

    return HttptoolsProtocol


def _app_httptools_server(kind: str, host: str, port: int, app_name: str) -> None:
    """An application run by an httptools protocol on one of LOOPS, as a
    competent user writes one: the head is collected into a small request
    object, the app is called when the request completes, and the response
    is framed with a Date cached per second and written in one call."""
    from email.utils import formatdate
    from http import HTTPStatus
    from urllib.parse import unquote

    loop = _new_loop(kind)
    app = globals()[app_name]
    status_lines = {int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode()) for s in HTTPStatus}
    state = {}

    def refresh() -> None:
        state["server_date"] = b"Server: raw\r\nDate: " + formatdate(usegmt=True).encode() + b"\r\n"
        loop.call_later(1.0 - time.time() % 1.0, refresh)

    refresh()

    class Request:
        __slots__ = ("method", "url", "headers", "body")

        def __init__(self, method: bytes, url: bytes, headers: List[Any], body: bytes) -> None:
            self.method = method
            self.url = url
            self.headers = headers
            self.body = body

        @property
        def path(self) -> str:
            return unquote(self.url.partition(b"?")[0].decode("latin-1"))

        def get_header(self, name: str, default: Optional[str] = None) -> Optional[str]:
            key = name.encode("latin-1").lower()
            for n, v in self.headers:
                if n.lower() == key:
                    return v.decode("latin-1")
            return default

    class Proto(_httptools_protocol()):  # type: ignore[misc]
        def connection_made(self, transport):
            super().connection_made(transport)
            self.url = b""
            self.headers = []
            self.body = []

        def on_url(self, url):
            self.url += url

        def on_header(self, name, value):
            self.headers.append((name, value))

        def on_body(self, body):
            self.body.append(body)

        def on_message_complete(self):
            parser = self.parser
            req = Request(parser.get_method(), self.url, self.headers, b"".join(self.body))
            self.url = b""
            self.headers = []
            self.body = []
            status, headers, body = app(req)
            if isinstance(body, str):
                body = body.encode()
            keep = parser.should_keep_alive()
            head = [status_lines[status], state["server_date"]]
            for name, value in headers:
                head.append(f"{name}: {value}\r\n".encode("latin-1"))
            head.append(b"Content-Length: %d\r\n" % len(body))
            head.append(b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
            head.append(body)
            self.transport.write(b"".join(head))
            if not keep:
                self.transport.close()

    _serve_forever(loop, Proto, host, port)


def _raw_httptools_server(kind: str, host: str, port: int) -> None:
    """A raw httptools protocol on one of LOOPS, as a competent user writes it."""
    from email.utils import formatdate

    loop = _new_loop(kind)
    body = b"Hello, World"
    state = {}

    def refresh() -> None:
        date = formatdate(usegmt=True).encode()
        head = (b"HTTP/1.1 200 OK\r\nServer: raw\r\nDate: " + date
                + b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n")
        state["keep"] = head + b"\r\n" + body
        state["close"] = head + b"Connection: close\r\n\r\n" + body
        loop.call_later(1.0 - time.time() % 1.0, refresh)

    refresh()

    class Proto(_httptools_protocol()):  # type: ignore[misc]
        def on_message_complete(self):
            if self.parser.should_keep_alive():
                self.transport.write(state["keep"])
            else:
                self.transport.write(state["close"])
                self.transport.close()

    _serve_forever(loop, Proto, host, port)


def _http_server(host: str, port: int, directory: Optional[str]) -> None:
    """http.server: ThreadingHTTPServer, HTTP/1.1, logging off."""
    from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet:
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

    if directory:
        class Handler(Quiet, SimpleHTTPRequestHandler):  # type: ignore[misc]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, directory=directory, **kw)
    else:
        class Handler(Quiet, BaseHTTPRequestHandler):  # type: ignore[misc,no-redef]
            def do_GET(self) -> None:
                body = b"Hello, World"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 4096
    httpd = ThreadingHTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    print(f"listening on {host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    types {{ application/octet-stream bin; text/html html; text/plain txt; }}
    server {{
        listen {host}:{port};
        root {root};
        location = / {{
            default_type "text/plain; charset=utf-8";
            return 200 "Hello, World";
        }}
    }}
}}
"""


# ---- running servers and wrk ----


@dataclass
class Setup:
    host: str
    root: Path  # the static directory
    tmp: Path
    server_cpu: Optional[int]
    load_cpu: Optional[int]
    env: Dict[str, str]
    connections: Optional[int]  # None: each workload's default

    def connections_for(self, workload: str) -> int:
        return self.connections or WORKLOAD_CONNECTIONS.get(workload, DEFAULT_CONNECTIONS)


def server_command(name: str, workload: str, setup: Setup, port: int, tmp: Path) -> List[str]:
    static = workload in STATIC_FILES
    app = APPS[workload][0] if workload in APPS else None
    host = setup.host
    if workload == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "fastmux.benchmarks.http:starlette_app", "--factory",
                "--host", host, "--port", str(port), "--loop", UVICORN_LOOPS[name], "--http", "httptools",
                "--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    if name in ("fastmux", "fastmux-log"):
        cmd = [sys.executable, "-m", "fastmux", "serve", "http", "--host", host, "--port", str(port)]
        if name == "fastmux-log":
            cmd += ["--access-log", str(tmp / "access.log")]
        if app is not None:
            return cmd + ["--app", f"{__name__}:{app}"]
        return cmd + (["--dir", str(setup.root)] if static else [])
    if name in LOOPS:
        return [sys.executable, "-m", "fastmux.benchmarks.http", "serve", name, host, str(port)] + ([app] if app else [])
    if name == "httpserver":
        cmd = [sys.executable, "-m", "fastmux.benchmarks.http", "serve", "httpserver", host, str(port)]
        return cmd + ([str(setup.root)] if static else [])
    if name == "nginx":
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, host=host, port=port, root=setup.root))
        return [shutil.which("nginx") or "nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    raise ValueError(name)


def _path_for(workload: str) -> str:
    if workload in APPS:
        return APPS[workload][1]
    if workload == "uvicorn":
        return UVICORN_PATH
    return "/" if workload == "hello" else "/" + STATIC_FILES[workload][0]


def _expected_body(setup: Setup, workload: str) -> bytes:
    if workload in ("hello", "app", "uvicorn"):
        return b"Hello, World"
    if workload == "json":
        return json.dumps({"path": "/json", "user_agent": USER_AGENT}).encode()
    if workload == "post":
        return POST_BODY
    return (setup.root / STATIC_FILES[workload][0]).read_bytes()


def check_answer(setup: Setup, port: int, workload: str) -> None:
    """One request by http.client, as wrk sends it: the right status and body, or RunFailed."""
    conn = http.client.HTTPConnection(setup.host, port, timeout=10)
    try:
        if workload == "post":
            conn.request("POST", _path_for(workload), body=POST_BODY,
                         headers={"User-Agent": USER_AGENT, "Content-Type": "application/octet-stream"})
        else:
            conn.request("GET", _path_for(workload), headers={"User-Agent": USER_AGENT})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise RunFailed(f"check request failed: {exc!r}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise RunFailed(f"check request: status {resp.status}")
    if body != _expected_body(setup, workload):
        raise RunFailed(f"check request: body {body[:60]!r}")


_WRK_REQS = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
_WRK_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_ERRS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def run_wrk(setup: Setup, port: int, workload: str, duration: float) -> Dict[str, Any]:
    url = f"http://{setup.host}:{port}{_path_for(workload)}"
    cmd = ["wrk", "-t1", f"-c{setup.connections_for(workload)}", f"-d{max(1, round(duration))}s", "--latency"]
    if workload in APPS:
        script = setup.tmp / f"wrk-{workload}.lua"
        if not script.exists():
            script.write_text(_WRK_SCRIPT + (_WRK_POST if workload == "post" else ""))
        cmd += ["-s", str(script)]
    cmd.append(url)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                             preexec_fn=pinned(setup.load_cpu), check=False)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed("wrk did not finish") from exc
    if out.returncode != 0:
        raise RunFailed(f"wrk failed: {out.stderr.strip()[-300:]}")
    m = _WRK_REQS.search(out.stdout)
    if not m:
        raise RunFailed(f"cannot read wrk's output: {out.stdout[-300:]}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}.get(m.group(3), 1.0)
    result: Dict[str, Any] = {"requests": int(m.group(1)), "seconds": float(m.group(2)) * unit}
    for pct, value, unit_text in _WRK_LAT.findall(out.stdout):
        result[f"p{pct}_ms"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit_text]
    errs = _WRK_ERRS.search(out.stdout)
    result["errors"] = sum(int(x) for x in errs.groups()) if errs else 0
    non2xx = _WRK_NON2XX.search(out.stdout)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return result


@dataclass
class Run:
    workload: str
    server: str
    round: int
    ok: bool = False
    error: str = ""
    requests: int = 0
    seconds: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    socket_errors: int = 0
    non2xx: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def user_us(self) -> float:
        return self.cpu_user_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def total_us(self) -> float:
        return (self.cpu_user_s + self.cpu_sys_s) / self.requests * 1e6 if self.requests else float("nan")


def measure(setup: Setup, run: Run, duration: float, warmup: float) -> None:
    command = partial(server_command, run.server, run.workload, setup)
    with running_server(command, setup.host, setup.env, setup.server_cpu, setup.tmp) as (proc, port):
        check_answer(setup, port, run.workload)
        if warmup > 0:
            run_wrk(setup, port, run.workload, warmup)
        children = run.server == "nginx" or run.workload == "uvicorn"  # master + worker; any it spawns
        before: CpuTimes = cpu_times(proc.pid, children=children)
        result = run_wrk(setup, port, run.workload, duration)
        after: CpuTimes = cpu_times(proc.pid, children=children)
    used = after - before
    run.requests = result["requests"]
    run.seconds = result["seconds"]
    run.cpu_user_s, run.cpu_sys_s = used.user, used.system
    run.p50_ms = result.get("p50_ms", 0.0)
    run.p99_ms = result.get("p99_ms", 0.0)
    run.socket_errors = result["errors"]
    run.non2xx = result["non2xx"]
    if run.non2xx:
        raise RunFailed(f"{run.non2xx} non-2xx responses")
    run.ok = True


# ---- the table ----


def summarize(runs: List[Run], servers: List[str], workloads: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for workload in workloads:
        for server in servers:
            if server not in SUPPORTS[workload]:
                continue
            good = [r for r in runs if r.ok and r.server == server and r.workload == workload]
            if not good:
                rows.append({"workload": workload, "server": server, "runs": 0})
                continue
            rows.append({
                "workload": workload, "server": server, "runs": len(good),
                "rps": median_of(good, "rps"), "user_us": median_of(good, "user_us"),
                "total_us": median_of(good, "total_us"), "p50_ms": median_of(good, "p50_ms"),
                "p99_ms": median_of(good, "p99_ms"),
                "socket_errors": sum(r.socket_errors for r in good),
            })
    return rows


def _label(server: str, workload: str) -> str:
    """Who answered, and by which path."""
    if server == "fastmux":
        if workload in APPS:
            return "fastmux --app (Python app)"
        return "fastmux --dir" if workload in STATIC_FILES else "fastmux (GET / in C)"
    if server == "fastmux-log":
        return "fastmux + access log" + (" (Python app)" if workload in APPS else " (GET / in Python)")
    if workload == "uvicorn":
        return f"uvicorn + Starlette on {server}"
    if server in LOOPS:
        return f"{server} + httptools" + (" + app" if workload in APPS else " (raw)")
    return {"nginx": "nginx (1 worker)", "httpserver": "http.server (threading)"}[server]


def print_table(rows: List[Dict[str, Any]]) -> None:
    header = f"{'workload':<10} {'server':<38} {'req/s':>9} {'user µs/req':>12} {'user+sys µs/req':>16} " \
             f"{'p50 ms':>7} {'p99 ms':>7}  {'user vs fastmux':>15}"
    print(header)
    print("-" * len(header))
    for workload in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == workload]
        ours = next((r for r in group if r["server"] == "fastmux" and r.get("runs")), None)
        for r in group:
            label = _label(r["server"], workload)
            if not r.get("runs"):
                print(f"{workload:<10} {label:<38} {'(all runs failed)':>9}")
                continue
            ratio = ""
            if ours is not None and r is not ours:
                ratio = f"{r['user_us'] / ours['user_us']:.2f}x"
            print(f"{workload:<10} {label:<38} {r['rps']:>9.0f} {r['user_us']:>12.2f} {r['total_us']:>16.2f} "
                  f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}  {ratio:>15}")
        print()


def _paired_ratio(runs: List[Run], workload: str, a: str, b: str, attr: str = "user_us") -> Optional[float]:
    """Median over rounds of attr(a)/attr(b), each pair from one round:
    steadier than a ratio of medians when the machine's load drifts."""
    ratios = []
    for rnd in sorted({r.round for r in runs}):
        ra = [r for r in runs if r.ok and r.round == rnd and r.workload == workload and r.server == a]
        rb = [r for r in runs if r.ok and r.round == rnd and r.workload == workload and r.server == b]
        if ra and rb and getattr(rb[0], attr) > 0:
            ratios.append(getattr(ra[0], attr) / getattr(rb[0], attr))
    return statistics.median(ratios) if ratios else None


# The targets: (workload, a, b, what is compared, target) for a/b.
TARGETS = (
    ("app", "fastmux", "uvloop", "user_us", "<= 0.60"),
    ("app", "fastmux", "uvloop", "rps", ">= 1.30"),
    ("json", "fastmux", "uvloop", "user_us", "<= 0.70"),
    ("post", "fastmux", "uvloop", "user_us", "<= 0.70"),
    ("hello", "fastmux", "uvloop", "user_us", "<= 0.80"),
    ("hello", "fastmux", "nginx", "user_us", "<= 1.00"),
    ("hello", "httpserver", "fastmux", "user_us", ">= 20"),
    ("static-1k", "fastmux", "nginx", "user_us", "<= 1.50"),
    ("app", "fastmux.asyncio", "uvloop", "user_us", "<= 0.80"),
    ("hello", "fastmux.asyncio", "uvloop", "user_us", "<= 0.80"),
    ("uvicorn", "fastmux.asyncio", "uvloop", "rps", ">= 1.10"),
)


def print_targets(rows: List[Dict[str, Any]], runs: List[Run]) -> None:
    """The targets, stated against this run's numbers."""
    medians = {(r["workload"], r["server"]): r for r in rows if r.get("runs")}
    lines = []
    for workload, a, b, attr, target in TARGETS:
        if (workload, a) not in medians or (workload, b) not in medians:
            continue
        of_medians = medians[(workload, a)][attr] / medians[(workload, b)][attr]
        paired = _paired_ratio(runs, workload, a, b, attr)
        what = "req/s" if attr == "rps" else "user CPU"
        label = f"{workload}: {a} / {b} {what}"
        lines.append(f"{label:<50} {of_medians:5.2f} (ratio of medians), "
                     f"{paired:5.2f} (median of per-round ratios)  target {target}")
    if lines:
        print("targets:")
        for line in lines:
            print("  " + line)


def _prepare_root(root: Path) -> None:
    # World-readable: nginx's worker runs as an unprivileged user when the
    # master runs as root.
    root.parent.chmod(0o755)
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name, size in STATIC_FILES.values():
        data = (bytes(range(256)) * (size // 256 + 1))[:size]
        (root / name).write_bytes(data)
        (root / name).chmod(0o644)


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("fastmux bench http: needs wrk (https://github.com/wg/wrk) on PATH", file=sys.stderr)
        return 2
    servers = args.servers or available_servers()
    missing = [s for s in servers if s not in available_servers()]
    if missing:
        print(f"fastmux bench http: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    workloads = args.workloads or available_workloads()
    if "uvicorn" in workloads and not uvicorn_installed():
        print("fastmux bench http: skipping the uvicorn workload: it needs uvicorn, starlette and httptools "
              "(pip install uvicorn starlette httptools)", file=sys.stderr)
        workloads = [w for w in workloads if w != "uvicorn"]
    if not any(s in SUPPORTS[w] for w in workloads for s in servers):
        print("fastmux bench http: none of these servers runs these workloads", file=sys.stderr)
        return 2
    server_cpu, load_cpu = pick_cpus(args.no_pin)
    runs: List[Run] = []
    with tempfile.TemporaryDirectory(prefix="fastmux-bench-http-") as tmpdir, running_on(load_cpu):
        tmp = Path(tmpdir)
        setup = Setup(host=args.host, root=tmp / "www", tmp=tmp, server_cpu=server_cpu,
                      load_cpu=load_cpu, env=child_env(), connections=args.connections)
        _prepare_root(setup.root)
        print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        pinning = "not pinned" if server_cpu is None else f"server on CPU {server_cpu}, wrk on CPU {load_cpu}"
        conns = f"-c{setup.connections or DEFAULT_CONNECTIONS}" + "".join(
            f" ({w}: -c{n})" for w, n in WORKLOAD_CONNECTIONS.items() if w in workloads and not setup.connections)
        print(f"# wrk -t1 {conns}, {args.duration:g} s runs after {args.warmup:g} s warm-up, "
              f"{args.rounds} interleaved round(s), medians; {pinning}", flush=True)
        for rnd in range(args.rounds):
            for workload in workloads:
                for server in servers:
                    if server not in SUPPORTS[workload]:
                        continue
                    r = Run(workload=workload, server=server, round=rnd)
                    try:
                        measure(setup, r, args.duration, args.warmup)
                    except RunFailed as exc:
                        r.error = str(exc)
                        print(f"  round {rnd + 1} {workload} {server}: FAILED: {exc}", file=sys.stderr, flush=True)
                    else:
                        print(f"  round {rnd + 1} {workload:<9} {server:<15} {r.rps:>9.0f} req/s  "
                              f"user {r.user_us:.2f} µs/req  user+sys {r.total_us:.2f} µs/req", flush=True)
                    runs.append(r)
    rows = summarize(runs, servers, workloads)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other work on the machine shows up in every figure; compare within one run)")
    print()
    print_table(rows)
    print_targets(rows, runs)
    good = [r for r in runs if r.ok]
    if good:
        ticks = min(r.cpu_user_s for r in good) / CLOCK_TICK_S
        print(f"\nCPU times are counted in {CLOCK_TICK_S * 1e3:.0f} ms ticks; the smallest user-CPU reading "
              f"was {ticks:.0f} ticks (±2 ticks is the quantisation error).")
    if args.json:
        args.json.write_text(json.dumps({"runs": [dict(asdict(r), rps=r.rps, user_us=r.user_us,
                                                       total_us=r.total_us) for r in runs],
                                         "medians": rows}, indent=2))
    return 0 if good else 1


def _serve_main(argv: Sequence[str]) -> int:
    kind, host, port = argv[0], argv[1], int(argv[2])
    if kind in LOOPS and len(argv) > 3:
        _app_httptools_server(kind, host, port, argv[3])
    elif kind in LOOPS:
        _raw_httptools_server(kind, host, port)
    elif kind == "httpserver":
        _http_server(host, port, argv[3] if len(argv) > 3 else None)
    else:
        print(f"unknown reference server {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(_serve_main(sys.argv[2:]))
    parser = argparse.ArgumentParser(prog="python -m fastmux.benchmarks.http")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
