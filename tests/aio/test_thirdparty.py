"""Real asyncio software runs unchanged on fastmux's event loop.

aiohttp (server and client), uvicorn serving a Starlette app (HTTP and a
websocket), and the websockets library (server and client) do real I/O over
127.0.0.1 on the loop that ``fastmux.asyncio.new_event_loop()`` returns,
looked up when each test runs.  Each library is an optional test
dependency: a test skips when its library is not installed.

Every test also checks that the loop it ran on *is* fastmux's, so that none
can pass on stdlib's loop; and the in-process tests that no descriptor was
left open and no ResourceWarning was emitted once they are done (``no_leaks``,
in conftest.py).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest

import fastmux.asyncio as fasyncio

TIMEOUT = 10.0  # bound of every wait; a healthy test takes well under a second
CHUNKS = [b"a" * 1000, b"b" * 70_000, b"c" * 10]  # one of them larger than a socket buffer's first read
BIG = bytes(range(256)) * 2048  # a 512 KiB websocket message: several writes, so flow control runs


def fastmux_loop_mismatch(loop: asyncio.AbstractEventLoop) -> str:
    """Why ``loop`` is not the kind ``fastmux.asyncio.new_event_loop()`` makes ('' if it is)."""
    probe = fasyncio.new_event_loop()
    try:
        if type(loop) is not type(probe):
            return f"running on {type(loop)!r}, fastmux.asyncio.new_event_loop() makes {type(probe)!r}"
        # The selector-only loop is stdlib's own class: only its selector tells it from stdlib's loop.
        if hasattr(probe, "_selector") and type(loop._selector) is not type(probe._selector):
            return f"a {type(loop)!r} over {type(loop._selector)!r}, not {type(probe._selector)!r}"
        return ""
    finally:
        probe.close()


def assert_on_fastmux_loop() -> None:
    mismatch = fastmux_loop_mismatch(asyncio.get_running_loop())
    assert not mismatch, mismatch


# --- aiohttp: a web.Application behind aiohttp's runner, aiohttp's ClientSession


async def _aiohttp_exchange() -> Dict[str, Any]:
    import aiohttp
    from aiohttp import web

    assert_on_fastmux_loop()
    ws_closed: asyncio.Future = asyncio.get_running_loop().create_future()

    async def hello(request: web.Request) -> web.Response:
        assert_on_fastmux_loop()
        return web.Response(text="hello " + request.query.get("name", "?"))

    async def peer(request: web.Request) -> web.Response:
        return web.json_response({"client_port": request.transport.get_extra_info("peername")[1]})

    async def upload(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size, "chunked": request.headers.get("Transfer-Encoding")})

    async def echo_json(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.json()})

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in CHUNKS:
            await response.write(chunk)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        ws_closed.set_result(ws.close_code)
        return ws

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/peer", peer), web.post("/upload", upload),
                    web.post("/json", echo_json), web.get("/download", download), web.get("/ws", ws_echo)])
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = "http://127.0.0.1:%d" % runner.addresses[0][1]

        async def body() -> AsyncIterator[bytes]:
            for chunk in CHUNKS:
                yield chunk

        found: Dict[str, Any] = {}
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        # one connection at most: the requests must reuse it (keep-alive)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) as session:
            found["hello"] = []
            for name in ("a", "b", "c"):
                async with session.get(base + "/hello", params={"name": name}) as resp:
                    found["hello"].append((resp.status, await resp.text()))
            ports = []
            for _ in range(3):
                async with session.get(base + "/peer") as resp:
                    ports.append((await resp.json())["client_port"])
            found["peer_ports"] = ports
            async with session.post(base + "/upload", data=body()) as resp:
                found["upload"] = await resp.json()
            async with session.post(base + "/json", json={"x": [1, 2, 3]}) as resp:
                found["json"] = await resp.json()
            async with session.get(base + "/download") as resp:
                found["download_chunked"] = resp.headers.get("Transfer-Encoding")
                found["download"] = b"".join([chunk async for chunk in resp.content.iter_chunked(4096)])
            async with session.ws_connect(base + "/ws", heartbeat=None) as ws:
                await ws.send_str("hello")
                text = await ws.receive(timeout=TIMEOUT)
                await ws.send_bytes(BIG)
                binary = await ws.receive(timeout=TIMEOUT)
                await ws.ping(b"are you there")
                await ws.send_str("after ping")
                after_ping = await ws.receive(timeout=TIMEOUT)
                await ws.close(code=4001, message=b"done")
                found["ws"] = [text.data, binary.data == BIG[::-1], after_ping.data]
            found["ws_server_close_code"] = await asyncio.wait_for(ws_closed, TIMEOUT)
    finally:
        await runner.cleanup()
    return found


def test_aiohttp_server_and_client(no_leaks: None) -> None:
    pytest.importorskip("aiohttp")
    found = fasyncio.run(_aiohttp_exchange())
    assert found["hello"] == [(200, "hello a"), (200, "hello b"), (200, "hello c")]
    assert len(set(found["peer_ports"])) == 1, "the client did not reuse its connection"
    assert found["upload"] == {"size": sum(map(len, CHUNKS)), "chunked": "chunked"}
    assert found["json"] == {"got": {"x": [1, 2, 3]}}
    assert found["download_chunked"] == "chunked"
    assert found["download"] == b"".join(CHUNKS)
    assert found["ws"] == ["HELLO", True, "AFTER PING"]
    assert found["ws_server_close_code"] == 4001


# --- uvicorn serving a Starlette app


def make_starlette_app() -> Any:
    """The Starlette app uvicorn serves (a factory: ``--factory``).  It reports
    whether it runs on fastmux's loop, seen from its lifespan and a request."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.lifespan_loop = fastmux_loop_mismatch(asyncio.get_running_loop())
        app.state.loop_thread = threading.get_ident()
        app.state.lifespan_done = False
        yield
        app.state.lifespan_done = True

    async def text(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"lifespan_loop": request.app.state.lifespan_loop,
                             "request_loop": fastmux_loop_mismatch(asyncio.get_running_loop()),
                             "query": dict(request.query_params)})

    def sync_info(request: Request) -> JSONResponse:
        # a sync endpoint: Starlette runs it in anyio's worker thread, which answers through the loop
        return JSONResponse({"in_worker_thread": threading.get_ident() != request.app.state.loop_thread})

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in CHUNKS:
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "bye":
                    await websocket.close(code=4002, reason="bye")
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"].upper())
                else:
                    await websocket.send_bytes(message["bytes"][::-1])
        except WebSocketDisconnect:
            pass

    routes = [Route("/", text), Route("/info", info), Route("/sync", sync_info), Route("/stream", stream),
              WebSocketRoute("/ws", ws_echo)]
    return Starlette(routes=routes, lifespan=lifespan)


def _http_get(conn: HTTPConnection, path: str) -> Tuple[int, Dict[str, str], bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def _exercise_starlette(port: int) -> Dict[str, Any]:
    """A blocking client (stdlib http.client, websockets' sync client): the
    server under test is the only thing here on an event loop."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    found: Dict[str, Any] = {}
    conn = HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        status, _, body = _http_get(conn, "/")
        found["text"] = (status, body)
        client_port = conn.sock.getsockname()[1]
        status, headers, body = _http_get(conn, "/info?q=1")
        found["info"] = (status, headers["content-type"], json.loads(body))
        status, _, body = _http_get(conn, "/sync")
        found["sync"] = (status, json.loads(body))
        status, headers, body = _http_get(conn, "/stream")
        found["stream"] = (status, headers.get("transfer-encoding"), body)
        found["keep_alive"] = conn.sock is not None and conn.sock.getsockname()[1] == client_port
    finally:
        conn.close()
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("hello")
        text = ws.recv(TIMEOUT)
        ws.send(BIG)
        binary = ws.recv(TIMEOUT)
        ws.ping(b"ping").wait(TIMEOUT)
        ws.send("bye")
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosed as exc:
            found["ws_close"] = (exc.rcvd.code, exc.rcvd.reason)
        found["ws"] = [text, binary == BIG[::-1]]
    return found


def _check_starlette_exchange(found: Dict[str, Any]) -> None:
    assert found["text"] == (200, b"hello from starlette")
    assert found["info"] == (200, "application/json", {"lifespan_loop": "", "request_loop": "", "query": {"q": "1"}})
    assert found["sync"] == (200, {"in_worker_thread": True})
    assert found["stream"] == (200, "chunked", b"".join(CHUNKS))
    assert found["keep_alive"]
    assert found["ws"] == ["HELLO", True]
    assert found["ws_close"] == (4002, "bye")


def _uvicorn_imports() -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("websockets.sync.client")
    uvicorn = pytest.importorskip("uvicorn")
    if not hasattr(uvicorn.Config, "get_loop_factory"):
        pytest.skip("this uvicorn predates loop factories (--loop MODULE:FACTORY, uvicorn 0.36)")


# uvicorn's two HTTP parsers and two websocket implementations (not "auto": in uvicorn 0.39, the
# last for Python 3.9, it picks the websockets library's deprecated legacy API, whose warning fails the test)
@pytest.mark.parametrize(("http", "ws", "module"), [("httptools", "websockets-sansio", "websockets"),
                                                    ("h11", "wsproto", "wsproto")])
def test_uvicorn_starlette_in_process(http: str, ws: str, module: str, no_leaks: None) -> None:
    """``uvicorn.Server(Config(app, loop="fastmux.asyncio:new_event_loop")).run()``
    in a thread, as an application embedding uvicorn would."""
    _uvicorn_imports()
    pytest.importorskip(http)
    pytest.importorskip(module)
    import uvicorn

    app = make_starlette_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, loop="fastmux.asyncio:new_event_loop", http=http,
                            ws=ws, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    failure: List[BaseException] = []

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: B036 - reported by the test's thread
            failure.append(exc)

    thread = threading.Thread(target=serve, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, f"uvicorn did not start: {failure}"
        found = _exercise_starlette(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
    assert not thread.is_alive(), "uvicorn did not stop"
    assert not failure, failure
    _check_starlette_exchange(found)
    assert app.state.lifespan_done


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float) -> Tuple[re.Match, str]:
    """The first match of ``pattern`` in ``proc``'s stderr, and all it printed till then (raw reads:
    a buffered readline could keep lines that follow it where the selector does not see them)."""
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            match = re.search(pattern, seen.decode(errors="replace"))
            if match:
                return match, seen.decode(errors="replace")
    raise AssertionError(f"no line matching {pattern!r} from uvicorn; it printed:\n{seen.decode(errors='replace')}")


def test_uvicorn_cli_loop_option() -> None:
    """``uvicorn --loop fastmux.asyncio:new_event_loop`` from the command line,
    stopped by SIGINT as a user would (Ctrl-C): a clean exit."""
    _uvicorn_imports()
    from support.server import child_env

    cmd = [sys.executable, "-W", "always::ResourceWarning", "-m", "uvicorn",
           "--factory", f"{Path(__file__).stem}:make_starlette_app", "--app-dir", str(Path(__file__).parent),
           "--loop", "fastmux.asyncio:new_event_loop", "--host", "127.0.0.1", "--port", "0", "--lifespan", "on"]
    proc = subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        match, out = _read_until(proc, r"Uvicorn running on http://127\.0\.0\.1:(\d+)", TIMEOUT)
        found = _exercise_starlette(int(match.group(1)))
        proc.send_signal(signal.SIGINT)
        out += proc.communicate(timeout=TIMEOUT)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Finished server process" in out and "ResourceWarning" not in out and "Traceback" not in out, out
    _check_starlette_exchange(found)


# --- the websockets library: its asyncio server and client


async def _websockets_exchange() -> Dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

    assert_on_fastmux_loop()
    server_closes: List[Tuple[Any, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        assert_on_fastmux_loop()
        async for message in ws:  # ends when the client closes
            if message == "close 4003":
                await ws.close(4003, "asked to")
                break
            await ws.send(message[::-1])
        server_closes.append((ws.close_code, ws.close_reason))

    found: Dict[str, Any] = {}
    async with serve(handler, "127.0.0.1", 0) as server:
        uri = "ws://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        async with connect(uri, open_timeout=TIMEOUT) as ws:
            await ws.send("hello")
            await ws.send(BIG)
            found["echo"] = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(2)]
            latency = await asyncio.wait_for(await ws.ping(b"ping"), TIMEOUT)
            found["ping"] = latency >= 0
            await ws.send("close 4003")
            try:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            except ConnectionClosedError as exc:
                found["closed_by_server"] = (exc.rcvd.code, exc.rcvd.reason)
        async with connect(uri, open_timeout=TIMEOUT) as ws:
            await ws.send("one more")
            found["second"] = await asyncio.wait_for(ws.recv(), TIMEOUT)
            await ws.close(1000, "client done")
            try:
                await ws.recv()
            except ConnectionClosedOK as exc:
                found["closed_by_client"] = (exc.sent.code, exc.sent.reason)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while len(server_closes) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    found["server_closes"] = server_closes
    return found


def test_websockets_server_and_client(no_leaks: None) -> None:
    pytest.importorskip("websockets.asyncio.server")  # the asyncio API: websockets 13+
    found = fasyncio.run(_websockets_exchange())
    assert found["echo"] == ["olleh", BIG[::-1]]
    assert found["ping"]
    assert found["closed_by_server"] == (4003, "asked to")
    assert found["second"] == "erom eno"
    assert found["closed_by_client"] == (1000, "client done")
    assert found["server_closes"] == [(4003, "asked to"), (1000, "client done")]
