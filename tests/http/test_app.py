"""The application hook."""
from __future__ import annotations

import importlib
import logging
import os
import pathlib
import sys

import pytest

import fastmux.http
from fastmux._impl import implementations, load_twin
from fastmux.http.app import load_app
from fastmux.http.request import Request, split_target
from fastmux.http.static import StaticFiles

from http_helpers import Conn, make_server, parse_responses

# Each test runs on every protocol and parser twin (see conftest.http_twins).
pytestmark = pytest.mark.usefixtures("http_twins")


def run(app, raw, methods=(), **server_kw):
    conn = Conn(make_server(app=app, **server_kw))
    return parse_responses(conn.feed(raw), list(methods)), conn


def test_tuple_response_and_request_fields():
    seen = []

    def app(req: Request):
        seen.append(req)
        return 201, [("Content-Type", "application/json"), ("X-Thing", "1")], '{"ok": true}'

    (r,), _ = run(app, b"POST /api/items%20x?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-Y: z\r\nContent-Length: 4\r\n\r\nbody")
    assert r.status == 201 and r.body == b'{"ok": true}'
    assert r.header("Content-Type") == "application/json" and r.header("X-Thing") == "1"
    assert r.header("Content-Length") == "12" and r.header("Date") and r.header("Server") == "fastmux"
    req = seen[0]
    assert req.method == "POST" and req.path == "/api/items x" and req.query == "a=1&b=2"
    assert req.target == "/api/items%20x?a=1&b=2" and req.version == "1.1"
    assert req.body == b"body" and req.keep_alive
    assert req.get_header("x-y") == "z" and req.get_header("missing", "d") == "d"
    assert req.headers == [("Host", "h"), ("X-Y", "z"), ("Content-Length", "4")]
    assert req.peer == ("127.0.0.1", 12345)


def test_chunked_request_body_reaches_app():
    bodies = []

    def app(req):
        bodies.append(req.body)
        return 200, {}, b"ok"

    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    (r,), _ = run(app, raw)
    assert r.status == 200 and bodies == [b"abcde"]
    assert r.header("Content-Type") == "application/octet-stream"


def test_chunked_trailers_are_kept_apart_from_headers():
    seen = []

    def app(req):
        seen.append((req.headers, req.trailers, req.body))
        return 200, {}, b"ok"

    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\nX-Checksum: 900150983cd24fb0\r\nX-Ows: v \t\r\n\r\n"
           b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    resps, _ = run(app, raw)
    assert [r.status for r in resps] == [200, 200]
    assert seen[0] == ([("Host", "h"), ("Transfer-Encoding", "chunked")],
                       [("X-Checksum", "900150983cd24fb0"), ("X-Ows", "v")], b"abc")
    assert seen[1] == ([("Host", "h")], [], b"")  # the next request starts clean


def test_header_values_lose_surrounding_whitespace():
    seen = []

    def app(req):
        seen.append(req.get_header("x-ows"))
        return 200, {}, b"ok"

    (r,), _ = run(app, b"GET / HTTP/1.1\r\nX-Ows:  \t padded value \t \r\n\r\n")
    assert r.status == 200 and seen == ["padded value"]


def test_none_falls_through_to_hello_and_404():
    def app(req):
        return None

    resps, _ = run(app, b"GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nPOST /x HTTP/1.1\r\n\r\n")
    assert [r.status for r in resps] == [200, 404, 405]
    assert resps[0].body == b"Hello, World"


def test_none_falls_through_to_static(tmp_path):
    (tmp_path / "f.txt").write_text("file")

    def app(req):
        return (200, [], "dynamic") if req.path == "/dyn" else None

    resps, _ = run(app, b"GET /dyn HTTP/1.1\r\n\r\nGET /f.txt HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                   static=StaticFiles(str(tmp_path)))
    assert [r.body for r in resps[:2]] == [b"dynamic", b"file"]
    assert resps[2].status == 200 and b"f.txt" in resps[2].body  # listing, not hello


def test_str_body_is_utf8_with_default_type():
    (r,), _ = run(lambda req: (200, None, "Grüße, 世界"), b"GET / HTTP/1.1\r\n\r\n")
    assert r.body == "Grüße, 世界".encode() and r.header("Content-Type") == "text/plain; charset=utf-8"


def test_head_gets_length_but_no_body():
    resps, _ = run(lambda req: (200, [], "12345"), b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", ["HEAD", "GET"])
    assert resps[0].header("Content-Length") == "5" and resps[0].body == b""
    assert resps[1].body == b"12345"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    resps, _ = run(lambda req: (status, [], "ignored"), b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert [r.status for r in resps] == [status, status]
    assert all(r.body == b"" and r.header("Content-Length") is None for r in resps)


def test_framing_headers_are_the_servers():
    app = lambda req: (200, [("Content-Length", "999"), ("Connection", "close"), ("Transfer-Encoding", "chunked")], "ab")
    (r,), conn = run(app, b"GET / HTTP/1.1\r\n\r\n")
    assert r.header("Content-Length") == "2" and r.header("Connection") == "keep-alive"
    assert r.header("Transfer-Encoding") is None and not conn.finished


def test_app_may_set_server_and_date():
    (r,), _ = run(lambda req: (200, [("Server", "mine"), ("Date", "whenever")], ""), b"GET / HTTP/1.1\r\n\r\n")
    assert r.header("Server") == "mine" and r.header("Date") == "whenever"


def test_path_body_uses_file(tmp_path):
    p = tmp_path / "doc.html"
    p.write_bytes(b"<b>x</b>" * 5000)
    (r,), _ = run(lambda req: (200, [], p), b"GET / HTTP/1.1\r\n\r\n")
    assert r.body == p.read_bytes() and r.header("Content-Type") == "text/html; charset=utf-8"


def test_file_object_body_from_its_position(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"0123456789")
    opened = []

    def app(req):
        f = open(p, "rb")
        f.seek(3)
        opened.append(f)
        return 200, [], f

    (r,), _ = run(app, b"GET / HTTP/1.1\r\n\r\n")
    assert r.body == b"3456789"
    assert opened[0].closed


@pytest.mark.parametrize("kind", ["path", "file object"])
def test_a_file_alone_is_200_with_its_type(tmp_path, kind):
    p = tmp_path / "page.html"
    p.write_bytes(b"<p>hi</p>\n" * 3)
    opened = []

    def app(req):
        if kind == "path":
            return p
        opened.append(open(p, "rb"))
        return opened[-1]

    (r,), _ = run(app, b"GET / HTTP/1.1\r\n\r\n")
    assert r.status == 200 and r.body == p.read_bytes()
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert all(f.closed for f in opened)


def test_file_body_on_native_sendfile_transport(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(os.urandom(50_000))
    conn = Conn(make_server(app=lambda req: (200, [], p)), sendfile=True)
    (r,) = parse_responses(conn.feed(b"GET / HTTP/1.1\r\n\r\n"))
    assert r.body == p.read_bytes() and conn.transport.sent_files


@pytest.mark.parametrize("bad", [
    lambda req: 1 / 0,
    lambda req: "not a tuple",
    lambda req: (200, [("X", "a\r\nInjected: yes")], ""),
    lambda req: (200, [("Bad Name", "v")], ""),
    lambda req: (99, [], ""),
    lambda req: (200, [], 12345),
    lambda req: (200, [], pathlib.Path("/nonexistent/file")),
])
def test_app_errors_are_500_and_connection_survives(bad, caplog):
    caplog.set_level(logging.CRITICAL, logger="fastmux.http")
    resps, conn = run(bad, b"GET /x HTTP/1.1\r\n\r\n")
    assert [r.status for r in resps] == [500]
    assert b"Injected" not in conn.transport.out
    assert not conn.finished


def test_app_sees_keep_alive_false_for_close():
    seen = []
    run(lambda req: seen.append(req.keep_alive), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert seen == [False]


@pytest.mark.parametrize("impl", implementations("fastmux.http._request_c"))
def test_split_target(impl):
    split_target = importlib.import_module({"c": "fastmux.http._request_c", "py": "fastmux.http.request"}[impl]).split_target
    assert split_target(b"/") == (b"/", b"")
    assert split_target(b"/a%20b") == (b"/a%20b", b"")
    assert split_target(b"/a?b=1") == (b"/a", b"b=1")
    assert split_target(b"/a?") == (b"/a", b"")
    assert split_target(b"/a?b?c") == (b"/a", b"b?c")
    assert split_target(b"/a#f?x") == (b"/a", b"")
    assert split_target(b"/a#f") == (b"/a", b"")
    assert split_target(b"/a?b=1#frag") == (b"/a", b"b=1")
    assert split_target(b"http://h:80/p?q") == (b"/p", b"q")
    assert split_target(b"http://h") == (b"/", b"")
    assert split_target(b"http://h?x") == (b"/", b"x")
    assert split_target(b"*") == (b"*", b"")


@pytest.mark.parametrize("impl", implementations("fastmux.http._request_c"))
@pytest.mark.parametrize("whole", [False, True], ids=["pairs", "section"])
def test_request_fields_on_both_twins(impl, whole):
    """The same answers whether the headers come as pairs or as the section
    they are split from (what the compiled parser hands over)."""
    mod = importlib.import_module({"c": "fastmux.http._request_c", "py": "fastmux.http.request"}[impl])
    headers = [(b"Host", b"h"), (b"X-Abc", b"1"), (b"x-abD", b"2"), (b"X-\xc9T\xc9", b"\xff")]
    if whole:
        headers = b"Host: h\r\nX-Abc:1 \r\nx-abD: \t2\r\nX-\xc9T\xc9: \xff"
    req = mod.Request("GET", b"/a%20b/%C3%A9?q=%20", "1.1", headers)
    assert req.path == "/a b/\u00e9" and req.raw_path == b"/a%20b/%C3%A9" and req.query == "q=%20"
    assert mod.Request("GET", b"/caf\xc3\xa9+x", "1.1", []).path == "/caf\u00c3\u00a9+x"  # no '%': as sent
    assert req.get_header("x-abd") == "2" and req.get_header("X-ABC") == "1" and req.get_header("x-ab") is None
    assert req.get_raw_header(b"x-\xc9t\xc9") == b"\xff"
    assert req.get_raw_header(b"x-\xe9t\xe9") is None  # only ASCII letters fold, as bytes.lower
    assert req.headers[3] == ("X-\u00c9T\u00c9", "\u00ff") and req.keep_alive and req.raw_trailers == []
    assert req.raw_headers == [(b"Host", b"h"), (b"X-Abc", b"1"), (b"x-abD", b"2"), (b"X-\xc9T\xc9", b"\xff")]
    assert req.get_header("x-abd") == "2" and req.get_raw_header(b"HOST") == b"h"  # the same after splitting


@pytest.mark.parametrize("impl", implementations("fastmux.http._request_c"))
def test_split_head_and_find_field(impl):
    """A header section as llhttp validated it: the first colon ends a name,
    OWS around a value is not part of it, a value may be empty or hold
    colons; find_field splits nothing and matches ASCII letters either case."""
    mod = importlib.import_module({"c": "fastmux.http._request_c", "py": "fastmux.http.request"}[impl])
    head = b"Host: a:8080\r\nX-Empty:\r\nX-Ows: \t v  w \t\r\nX-Blank:   \r\nhost: second\r\nLast:z \t"
    pairs = [(b"Host", b"a:8080"), (b"X-Empty", b""), (b"X-Ows", b"v  w"), (b"X-Blank", b""),
             (b"host", b"second"), (b"Last", b"z")]
    assert mod.split_head(head) == pairs
    assert mod.split_head(b"") == []
    assert mod.split_head(b"A:") == [(b"A", b"")]
    for name, value in [(b"HOST", b"a:8080"), (b"x-empty", b""), (b"x-ows", b"v  w"), (b"x-blank", b""),
                        (b"last", b"z"), (b"x-ow", None), (b"hos", None), (b"x-owss", None), (b"", None)]:
        assert mod.find_field(head, name) == value


def test_load_app(tmp_path, monkeypatch):
    (tmp_path / "myapp_for_test.py").write_text("class Box:\n    def app(req):\n        return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        fn = load_app("myapp_for_test:Box.app")
        assert callable(fn)
        with pytest.raises(ValueError):
            load_app("no_colon")
        with pytest.raises(AttributeError):
            load_app("myapp_for_test:missing")
    finally:
        sys.modules.pop("myapp_for_test", None)


# render() of both twins of app.py (and response.py under it): the compiled
# one is what the protocol calls in a compiled build.  Both are given the
# Request and Clock twins the protocol uses (the compiled render reads them
# as C types).
APP_TWINS = {"c": "fastmux.http._app_c", "py": "fastmux.http.app"}
TwinRequest = fastmux.http.Request
Clock = load_twin("fastmux.http._response_c", "fastmux.http.response").Clock
RESULTS = [
    (200, [("Content-Type", "text/plain; charset=utf-8")], b"Hello, World"),
    (200, [("Content-Type", "application/json")], '{"path": "/\u00e9"}'),
    (201, (("X-A", "1"), (b"X-B", b"2")), b""),
    (200, [("Content-Length", "99"), ("Connection", "close"), ("X-C", "3")], "dropped"),
    (200, [("Server", "mine"), ("Date", "then")], b"x"),
    (299, [], "unknown reason"),
    (200, {"X-D": "4"}, b"dict headers"),
    (200, [("X-E", 5)], b"int value"),
    (204, [("X-F", "6")], b""),
    (200, [("Bad", "a\r\nInjected: 1")], b"refused"),
    (200, [("Bad Name", "v")], b"refused"),
]


def _render_all(module, clock, method="GET", conn=0):
    req = TwinRequest(method, b"/", "1.1", [])
    return [module.render(result, req, clock, conn) for result in RESULTS]


@pytest.mark.parametrize("twin", implementations("fastmux.http._app_c"))
@pytest.mark.parametrize("method,conn", [("GET", 0), ("HEAD", 0), ("GET", 1)])
def test_render_twins_agree_and_cached_heads_change_nothing(twin, method, conn):
    pure = importlib.import_module(APP_TWINS["py"])
    module = importlib.import_module(APP_TWINS[twin])
    clock = Clock()
    clock.refresh(1_700_000_000.5)
    first = _render_all(module, clock, method, conn)  # heads made
    again = _render_all(module, clock, method, conn)  # the same heads from the cache
    fresh = Clock()
    fresh.refresh(1_700_000_000.5)
    assert first == again == _render_all(pure, fresh, method, conn)
    assert b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n" in first[0]
    assert first[-1].startswith(b"HTTP/1.1 500 ") and first[-2].startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("twin", implementations("fastmux.http._app_c"))
def test_cached_heads_carry_the_current_date(twin):
    module = importlib.import_module(APP_TWINS[twin])
    clock = Clock()
    clock.refresh(1_700_000_000.0)
    req = TwinRequest("GET", b"/", "1.1", [])
    result = (200, [("Content-Type", "text/plain")], b"x")
    assert b"22:13:20 GMT" in module.render(result, req, clock, 0)
    clock.refresh(1_700_000_001.0)
    assert b"22:13:21 GMT" in module.render(result, req, clock, 0)


class _Counter:
    """A header value whose text changes each time it is rendered."""

    def __init__(self) -> None:
        self.n = 0

    def __str__(self) -> str:
        self.n += 1
        return str(self.n)


@pytest.mark.parametrize("twin", implementations("fastmux.http._app_c"))
def test_heads_of_other_values_are_not_cached(twin):
    module = importlib.import_module(APP_TWINS[twin])
    clock = Clock()
    req = TwinRequest("GET", b"/", "1.1", [])
    value = _Counter()
    assert b"X-N: 1\r\n" in module.render((200, [("X-N", value)], b""), req, clock, 0)
    assert b"X-N: 2\r\n" in module.render((200, [("X-N", value)], b""), req, clock, 0)
    # 1 == 1.0, but they render differently: neither is cached under the other
    assert b"X-B: 1\r\n" in module.render((200, [("X-B", 1)], b""), req, clock, 0)
    assert b"X-B: 1.0\r\n" in module.render((200, [("X-B", 1.0)], b""), req, clock, 0)


class _Renamed(str):
    """A header name equal to "X-S" whose rendering is another."""

    def __str__(self) -> str:
        return "X-T"


@pytest.mark.parametrize("twin", implementations("fastmux.http._app_c"))
def test_last_shape_is_reused_only_for_the_same_head(twin):
    module = importlib.import_module(APP_TWINS[twin])
    clock = Clock()
    clock.refresh(1_700_000_000.0)
    get, head = TwinRequest("GET", b"/", "1.1", []), TwinRequest("HEAD", b"/", "1.1", [])
    pair = ("X-S", "1")

    def render(result, req=get, conn=0):
        out = module.render(result, req, clock, conn)
        fresh = Clock()
        fresh.refresh(1_700_000_000.0)
        assert out == module.render(result, req, fresh, conn)  # what an empty cache gives
        return out

    for _ in range(2):  # made, then from the cache
        assert render((200, [pair], b"ab")).endswith(b"X-S: 1\r\nContent-Type: application/octet-stream\r\n"
                                                     b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\nab")
    # The same shape with another body length, connection, method; equal pairs in new tuples.
    assert b"Content-Length: 3\r\n" in render((200, [pair], b"abc"))
    assert b"Connection: close\r\n" in render((200, [pair], b"abc"), conn=1)
    assert render((200, (("X-" + "S", "1"),), b"abc"), head).endswith(b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\n")
    # Anything else in the shape differs: status, body kind, pairs.
    assert render((201, [pair], b"ab")).startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in render((200, [pair], "ab"))
    assert b"X-S: 2\r\n" in render((200, [("X-S", "2")], b"ab"))
    assert b"X-S: 1\r\nX-U: 1\r\n" in render((200, [pair, ("X-U", "1")], b"ab"))
    render((200, [pair], b"ab"))
    assert b"X-T: 1\r\n" in render((200, [(_Renamed("X-S"), "1")], b"ab"))
    # A new second: a new Date, never the last head of the old one.
    clock.refresh(1_700_000_001.0)
    assert b"22:13:21 GMT" in module.render((200, [pair], b"ab"), get, clock, 0)
