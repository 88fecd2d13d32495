"""The connection protocol, driven directly with a fake transport."""
from __future__ import annotations

import os

import pytest

from fastmux.http.protocol import HttpConfig
from fastmux.http.response import Clock

from support.http import FakeTransport
from http_helpers import Conn, make_server, parse_responses, strip_date

# Each test runs on every protocol and parser twin (see conftest.http_twins).
pytestmark = pytest.mark.usefixtures("http_twins")

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"


def one(data: bytes, method: str = "GET"):
    resps = parse_responses(data, [method])
    assert len(resps) == 1, resps
    return resps[0]


# -- hello world ------------------------------------------------------------


def test_hello_get(conn):
    r = one(conn.feed(GET))
    assert r.status == 200
    assert r.body == b"Hello, World"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Content-Length") == "12"
    assert r.header("Date").endswith(" GMT")
    assert r.header("Server") == "fastmux"
    assert not conn.finished


def test_hello_fast_path_same_bytes_as_general_path(conn):
    first = conn.feed(GET)  # first request of a connection: general path
    second = conn.feed(GET)  # then the prebuilt bytes
    assert strip_date(first) == strip_date(second)
    assert conn.protocol._fast


def test_head_has_headers_but_no_body(conn):
    for _ in range(3):  # general path, then fast path
        data = conn.feed(HEAD)
        r = one(data, "HEAD")
        assert r.status == 200 and r.body == b""
        assert r.header("Content-Length") == "12"
        assert data.endswith(b"\r\n\r\n")


def test_connection_uses_the_twins(conn, http_twins):
    protocol_module, parser_cls = http_twins
    assert type(conn.protocol) is protocol_module.HttpProtocol
    assert type(conn.protocol._parser) is parser_cls


def test_hello_is_answered_inside_the_compiled_parser(conn, http_twins):
    """With the compiled parser, warm hello requests never reach Python
    callbacks: feed_hello answers them (and counts them)."""
    if not hasattr(http_twins[1], "feed_hello"):
        pytest.skip("httptools: on_message_complete answers hello")
    conn.feed(GET)  # the first request of a connection takes the general path
    data = conn.feed(GET + HEAD + GET)
    assert [r.status for r in parse_responses(data, ["GET", "HEAD", "GET"])] == [200, 200, 200]
    assert conn.protocol._parser.answered == 3
    assert conn.protocol.requests() == 4
    conn.feed(b"GET /nope HTTP/1.1\r\n\r\n" + GET)  # the rest of a read after a miss: callbacks
    assert conn.protocol._parser.answered == 3
    assert conn.protocol.requests() == 6


def test_compiled_pair_makes_no_python_callbacks(http_twins):
    """The compiled protocol is a RequestSink of the compiled parser: every
    request event reaches it as a C call, never through the httptools-named
    Python callbacks (which the other pairs use)."""
    proto, parser_cls = http_twins
    compiled_pair = proto.__name__ == "fastmux.http._protocol_c" and parser_cls.__module__ == "fastmux.http._parser_c"
    seen = []

    def spy(name):
        def method(self, *args):
            seen.append(name)
            return getattr(proto.HttpProtocol, name)(self, *args)
        return method

    names = ("on_url", "on_header", "on_headers_complete", "on_body", "on_message_complete")
    Spy = type("Spy", (proto.HttpProtocol,), {name: spy(name) for name in names})
    p = Spy(make_server(app=lambda req: (200, [], req.body)))
    t = FakeTransport()
    t.protocol = p
    p.connection_made(t)
    p.data_received(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert one(t.take()).body == b"hi"
    if compiled_pair:
        assert seen == []
    else:
        assert seen == ["on_url", "on_header", "on_header", "on_headers_complete", "on_body", "on_message_complete"]


@pytest.mark.parametrize("pieces", [1, 2])
def test_compiled_pair_hands_a_whole_head_over_unsplit(http_twins, pieces):
    """With the compiled pair, a head that came in one read reaches the
    request as its header section, split only when asked; one in pieces
    arrives header by header.  The app sees the same either way."""
    proto, parser_cls = http_twins
    seen = []

    def app(req):
        seen.append((req._raw_headers is None, req.get_header("x-b"), req.headers))
        return 200, [], b""

    head = b"GET /x HTTP/1.1\r\nHost: h\r\nX-B:  2 \r\n\r\n"
    conn = Conn(make_server(app=app))
    conn.feed(*([head] if pieces == 1 else [head[:20], head[20:]]))
    compiled_pair = proto.__name__ == "fastmux.http._protocol_c" and parser_cls.__module__ == "fastmux.http._parser_c"
    assert seen == [(compiled_pair and pieces == 1, "2", [("Host", "h"), ("X-B", "2")])]


def test_keep_alive_many_requests(conn):
    for _ in range(50):
        assert one(conn.feed(GET)).body == b"Hello, World"
    assert not conn.finished
    assert conn.protocol.requests() == 50


def test_http10_closes_by_default(conn):
    r = one(conn.feed(b"GET / HTTP/1.0\r\n\r\n"))
    assert r.status == 200 and r.header("Connection") == "close"
    assert conn.finished


def test_http10_keep_alive_on_request(conn):
    for _ in range(3):
        r = one(conn.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        assert r.status == 200 and r.header("Connection").lower() == "keep-alive"
    assert not conn.finished


@pytest.mark.parametrize("warm", [False, True])
def test_connection_close(conn, warm):
    if warm:
        conn.feed(GET, GET)
    r = one(conn.feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert r.header("Connection") == "close" and r.body == b"Hello, World"
    assert conn.transport.eof_written  # lingering close: half-close first
    # Whatever follows is discarded, not answered.
    assert conn.feed(GET) == b""
    conn.protocol.eof_received()
    conn.lose()


def test_pipelined_in_order(conn):
    reqs = [GET, b"GET /nope HTTP/1.1\r\n\r\n", HEAD, b"GET /?q=1 HTTP/1.1\r\n\r\n", b"DELETE / HTTP/1.1\r\n\r\n"]
    data = conn.feed(b"".join(reqs))
    resps = parse_responses(data, ["GET", "GET", "HEAD", "GET", "GET"])
    assert [r.status for r in resps] == [200, 404, 200, 200, 405]
    assert resps[4].header("Allow") == "GET, HEAD"


def test_pipelined_burst_then_close(conn):
    data = conn.feed(GET * 100 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET * 5)
    resps = parse_responses(data)
    assert len(resps) == 101
    assert resps[-1].header("Connection") == "close"


def _app(req):
    if req.path == "/big":
        return 200, [("Content-Type", "application/octet-stream")], req.query.encode() * 20_000
    if req.path == "/app":
        return 200, [("Content-Type", "text/plain; charset=utf-8")], b"Hello, World"
    return None


@pytest.mark.parametrize("with_app", [False, True])
def test_pipelined_responses_of_one_read_in_one_write(with_app):
    conn = Conn(make_server(app=_app if with_app else None))
    reqs = [GET, HEAD, b"GET /nope HTTP/1.1\r\n\r\n", b"GET /app HTTP/1.1\r\n\r\n", GET, GET]
    conn.protocol.data_received(b"".join(reqs))
    assert conn.transport.writes == 1
    resps = parse_responses(conn.transport.take(), ["GET", "HEAD"])
    assert [r.status for r in resps] == [200, 200, 404, 200 if with_app else 404, 200, 200]
    # A lone request is one write too, and so is each read after it.
    conn.protocol.data_received(GET)
    conn.protocol.data_received(GET + GET)
    assert conn.transport.writes == 3 and len(parse_responses(conn.transport.take())) == 3


def test_pipelined_big_responses_are_written_as_they_grow():
    conn = Conn(make_server(app=_app))
    conn.protocol.data_received(b"".join(b"GET /big?%d HTTP/1.1\r\n\r\n" % i for i in range(6)) + GET)
    assert 1 < conn.transport.writes < 7  # collected up to a bound, not all of them, nor one by one
    resps = parse_responses(conn.transport.take())
    assert [r.body for r in resps] == [b"%d" % i * 20_000 for i in range(6)] + [b"Hello, World"]


def test_continue_after_pipelined_response_in_one_write(conn):
    upload = b"PUT /up HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    conn.protocol.data_received(GET + upload)
    assert conn.transport.writes == 1
    assert conn.transport.take().endswith(b"Hello, World" + b"HTTP/1.1 100 Continue\r\n\r\n")


def test_absolute_form_target(conn):
    assert one(conn.feed(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")).status == 200
    assert one(conn.feed(b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n")).status == 404


def test_request_with_body_is_read_and_discarded(conn):
    data = conn.feed(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + GET)
    assert [r.status for r in parse_responses(data)] == [200, 200]


def test_chunked_body(conn):
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    data = conn.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body + GET)
    assert [r.status for r in parse_responses(data)] == [405, 200]


# -- bad input ------------------------------------------------------------------


BAD_400 = [
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # space before colon
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  # obsolete folding
    b"GET /\x01 HTTP/1.1\r\n\r\n",  # control character in the target
    b"GET / HTTP/1.1\r\nX\x00: y\r\n\r\n",
    b"GET / HTTP/1.3\r\n\r\n",
    b"GET / FOO/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    # smuggling: both framings, or two lengths
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", BAD_400, ids=range(len(BAD_400)))
@pytest.mark.parametrize("warm", [False, True])
def test_malformed_is_400_and_close(conn, request_bytes, warm):
    if warm:
        conn.feed(GET)
    data = conn.feed(request_bytes + GET)  # the GET after it must not be answered
    r = one(data)
    assert r.status == 400
    assert r.header("Connection") == "close"
    assert conn.finished


def test_smuggled_request_is_not_answered(conn):
    # A front end that trusts Content-Length would forward one request; one
    # that trusts chunked would see a second ("GET /admin").  We answer 400
    # once and nothing else.
    data = conn.feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n"
    )
    assert [r.status for r in parse_responses(data)] == [400]


def test_unknown_method_is_501(conn):
    r = one(conn.feed(b"FROB / HTTP/1.1\r\n\r\n"))
    assert r.status == 501 and conn.finished


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
def test_known_unsupported_method_is_405_and_keeps_alive(conn, method):
    r = one(conn.feed(method + b" / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    assert not conn.finished


def test_connect_is_405_and_close(conn):
    data = conn.feed(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01")
    assert [r.status for r in parse_responses(data)] == [405]
    assert conn.finished


def test_upgrade_is_ignored_and_parsing_goes_on(conn):
    data = conn.feed(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n" + GET)
    assert [r.status for r in parse_responses(data)] == [200, 200]


@pytest.mark.parametrize("version", [b"2.0", b"0.9"])
def test_unsupported_version_is_505(conn, version):
    r = one(conn.feed(b"GET / HTTP/" + version + b"\r\n\r\n"))
    assert r.status == 505 and conn.finished


def test_long_url_is_414():
    conn = Conn(make_server(limits=dict(max_url=100, max_head=1000)))
    r = one(conn.feed(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n"))
    assert r.status == 414 and conn.finished


def test_long_url_in_pieces_is_414():
    conn = Conn(make_server(limits=dict(max_url=100, max_head=1000)))
    data = conn.feed(b"GET /", *[b"a" * 50] * 50)
    assert one(data).status == 414 and conn.finished


def test_big_head_is_431():
    conn = Conn(make_server(limits=dict(max_url=500, max_head=2000)))
    r = one(conn.feed(b"GET / HTTP/1.1\r\n" + b"X-A: " + b"b" * 5000 + b"\r\n\r\n"))
    assert r.status == 431 and conn.finished


def test_big_head_in_pieces_is_431():
    conn = Conn(make_server(limits=dict(max_url=500, max_head=2000)))
    chunks = [b"GET / HTTP/1.1\r\n"] + [b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(100)]
    data = conn.feed(*chunks)
    assert one(data).status == 431 and conn.finished


def test_endless_header_line_is_431():
    # One header line that never ends: llhttp buffers it, the guard stops it.
    conn = Conn(make_server(limits=dict(max_url=500, max_head=2000)))
    data = conn.feed(b"GET / HTTP/1.1\r\nX-Long: ", *[b"v" * 500] * 20)
    assert one(data).status == 431 and conn.finished


def test_too_many_headers_is_431():
    conn = Conn(make_server(limits=dict(max_headers=10)))
    r = one(conn.feed(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n"))
    assert r.status == 431


def test_too_many_headers_is_431_before_the_body():
    conn = Conn(make_server(limits=dict(max_headers=10)))
    head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n"
    assert one(conn.feed(head)).status == 431 and conn.finished


def test_head_under_the_limit_in_pieces_is_fine():
    conn = Conn(make_server(limits=dict(max_url=500, max_head=4000)))
    chunks = [b"GET / HTTP/1.1\r\n"] + [b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(30)] + [b"\r\n"]
    assert one(conn.feed(*chunks)).status == 200


def test_body_over_limit_by_content_length_is_413_before_the_body():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    r = one(conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"))
    assert r.status == 413 and conn.finished


def test_body_over_limit_chunked_is_413():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    chunk = b"100\r\n" + b"x" * 256 + b"\r\n"
    data = conn.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", *[chunk] * 10)
    assert one(data).status == 413 and conn.finished


def test_body_at_limit_is_fine():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", b"x" * 1000)
    assert one(data).status == 405  # read completely, then refused by method


def test_expect_100_continue():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert data == b"HTTP/1.1 100 Continue\r\n\r\n"
    data = conn.feed(b"hello")
    assert one(data).status == 405


def test_expect_100_continue_in_a_later_expect_field():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nExpect: x-other\r\nContent-Length: 5\r\nEXPECT: 100-Continue\r\n\r\n")
    assert data == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert one(conn.feed(b"hello")).status == 405


def test_expect_100_continue_too_big_is_413_not_100():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert one(data).status == 413


def test_body_over_limit_is_413_even_with_body_bytes_in_the_same_read():
    """The head and the start of the body in one read: refused at once, not
    after a megabyte more of body."""
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n" + b"x" * 10)
    assert one(data).status == 413 and conn.finished


@pytest.mark.parametrize("order", ["expect-first", "length-first"])
def test_expect_before_oversize_length_gets_only_413(order):
    headers = [b"Expect: 100-continue\r\n", b"Content-Length: 5000\r\n"]
    if order == "length-first":
        headers.reverse()
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nHost: a\r\n" + b"".join(headers) + b"\r\n")
    assert b"100 Continue" not in data
    assert one(data).status == 413


def test_expect_100_continue_waits_for_the_whole_head():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    assert conn.feed(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n") == b""
    assert conn.feed(b"Content-Length: 5\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert one(conn.feed(b"hello")).status == 405


def test_expect_100_continue_on_a_chunked_body():
    conn = Conn(make_server(limits=dict(max_body=1000)))
    data = conn.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    assert data == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert one(conn.feed(b"5\r\nhello\r\n0\r\n\r\n")).status == 405


def test_expect_without_a_body_gets_no_100(conn):
    r = one(conn.feed(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"))
    assert r.status == 200


@pytest.mark.parametrize("length", [1001, 2**63 - 1, 2**63, 2**64 - 1])
def test_declared_length_over_the_limit_is_413_however_large(length):
    conn = Conn(make_server(limits=dict(max_body=1000)))
    assert one(conn.feed(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length)).status == 413


def test_input_after_error_is_ignored(conn):
    conn.feed(b"GARBAGE\r\n\r\n")
    assert conn.finished
    assert conn.feed(GET * 10) == b""


# -- flow control -----------------------------------------------------------------


def test_pause_reading_while_write_buffer_full():
    server = make_server()
    conn = Conn(server, high_water=1000)
    conn.feed(GET)
    conn.transport.drain()
    conn.feed(GET * 20)  # about 3 KB of responses: over the mark
    assert not conn.transport.reading
    conn.transport.drain()
    assert conn.transport.reading


def test_pipeline_queue_bound_pauses_reading(tmp_path):
    # A large file response keeps the rest queued behind it.
    (tmp_path / "big").write_bytes(os.urandom(300_000))
    from fastmux.http.static import StaticFiles

    server = make_server(static=StaticFiles(str(tmp_path)), limits=dict(max_pipeline=4))
    conn = Conn(server, high_water=65536)
    conn.protocol.data_received(b"GET /big HTTP/1.1\r\n\r\n" + b"GET /nope HTTP/1.1\r\n\r\n" * 10)
    assert not conn.transport.reading  # queued responses over max_pipeline
    for _ in range(20):
        conn.transport.drain()
    assert conn.transport.reading
    resps = parse_responses(conn.transport.take())
    assert [r.status for r in resps] == [200] + [404] * 10
    assert resps[0].body == (tmp_path / "big").read_bytes()


def test_vanished_client_releases_everything(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 1_000_000)
    from fastmux.http.static import StaticFiles

    server = make_server(static=StaticFiles(str(tmp_path)))
    conn = Conn(server, high_water=65536)
    fds_before = len(os.listdir("/proc/self/fd"))
    conn.protocol.data_received(b"GET /big HTTP/1.1\r\n\r\n" * 3)
    assert conn.protocol._queue
    conn.lose()
    assert not conn.protocol._queue
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert conn.protocol not in server.connections
    conn.protocol.data_received(GET)  # late input after loss: ignored, no error
    conn.protocol.resume_writing()


def test_native_sendfile_used_when_transport_has_it(tmp_path):
    payload = os.urandom(100_000)
    (tmp_path / "f.bin").write_bytes(payload)
    from fastmux.http.static import StaticFiles

    server = make_server(static=StaticFiles(str(tmp_path)))
    conn = Conn(server, sendfile=True)
    data = conn.feed(b"GET /f.bin HTTP/1.1\r\n\r\nGET /f.bin HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n")
    resps = parse_responses(data)
    assert resps[0].body == payload
    assert resps[1].status == 206 and resps[1].body == payload[10:20]  # small: inline
    assert len(conn.transport.sent_files) == 1


# -- timeouts (the once-a-second sweep, driven by hand) ----------------------------


def _timeouts(**kw):
    base = dict(keepalive_timeout=5, header_timeout=3, body_timeout=4, send_timeout=6, linger_timeout=2)
    base.update(kw)
    return make_server(config=HttpConfig(**base))


def _sweep(server, start, seconds):
    for t in range(seconds + 1):
        server.tick(now=start + t)


def test_idle_keep_alive_times_out():
    server = _timeouts()
    conn = Conn(server)
    conn.feed(GET)
    _sweep(server, 1000, 4)
    assert not conn.transport.closed
    _sweep(server, 1005, 2)
    assert conn.transport.closed and conn.transport.take() == b""


def test_active_connection_does_not_time_out():
    server = _timeouts()
    conn = Conn(server)
    for t in range(20):
        conn.feed(GET)
        server.tick(now=1000 + t)
    assert not conn.transport.closed


def test_slow_header_gets_408():
    server = _timeouts()
    conn = Conn(server)
    out = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for t in range(5):
        out += conn.feed(b"X-%d: drip\r\n" % t)  # trickling keeps it "active" but not complete
        server.tick(now=1000 + t)
    r = one(out + conn.transport.take())
    assert r.status == 408 and conn.finished


def test_stalled_body_gets_408():
    server = _timeouts()
    conn = Conn(server)
    conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    _sweep(server, 1000, 5)
    assert one(conn.transport.take()).status == 408


def test_linger_ends():
    server = _timeouts()
    conn = Conn(server)
    conn.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert conn.transport.eof_written and not conn.transport.closed
    _sweep(server, 1000, 3)
    assert conn.transport.closed


def test_client_not_reading_is_dropped():
    server = _timeouts()
    conn = Conn(server, high_water=100)
    conn.feed(GET * 5)
    assert not conn.transport.reading
    _sweep(server, 1000, 7)
    assert conn.transport.aborted


def test_graceful_shutdown_idle_and_busy():
    server = make_server()
    idle, busy = Conn(server), Conn(server)
    idle.feed(GET)
    busy.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")  # head in progress
    idle.protocol.shutdown()
    busy.protocol.shutdown()
    assert idle.finished and not busy.finished
    r = one(busy.feed(b"\r\n"))
    assert r.status == 200 and r.header("Connection") == "close" and busy.finished


# -- the clock ------------------------------------------------------------------------


def test_clock_rebuilds_once_per_second():
    clock = Clock()
    clock.refresh(1_000_000_000.2)
    first = clock.hello
    before = list(first)
    assert clock.refresh(1_000_000_000.9) is False and clock.hello == before
    assert clock.refresh(1_000_000_001.0) is True
    # Rebuilt in place: connections hold this very list.
    assert clock.hello is first and first != before
    assert b"Date: Sun, 09 Sep 2001 01:46:41 GMT\r\n" in first[0]


def test_date_changes_with_the_tick(conn, server):
    server.tick(wall=1_000_000_000.0)
    conn.feed(GET)
    assert b"Sun, 09 Sep 2001 01:46:40 GMT" in conn.feed(GET)
    server.tick(wall=1_000_000_007.0)
    assert b"Sun, 09 Sep 2001 01:46:47 GMT" in conn.feed(GET)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("native", [False, True])
def test_pipelined_file_burst_opens_one_file_at_a_time(tmp_path, native):
    payload = os.urandom(100_000)
    (tmp_path / "f").write_bytes(payload)
    from fastmux.http.static import StaticFiles

    server = make_server(static=StaticFiles(str(tmp_path)), limits=dict(max_pipeline=8))
    conn = Conn(server, high_water=65536, sendfile=native)
    before = _open_fds()
    burst = b"GET /f HTTP/1.1\r\n\r\n" * 150 + GET + b"GET /f HTTP/1.1\r\nConnection: close\r\n\r\n"
    conn.protocol.data_received(burst)
    assert _open_fds() <= before + 1
    assert not conn.transport.reading  # more than max_pipeline requests wait
    for _ in range(2000):
        if conn.finished:
            break
        conn.transport.drain()
        assert _open_fds() <= before + 1
    assert conn.finished and _open_fds() == before
    resps = parse_responses(conn.transport.take())
    assert len(resps) == 152
    assert all(r.body == payload for i, r in enumerate(resps) if i != 150)
    assert b"Directory listing" in resps[150].body and resps[-1].header("Connection") == "close"


def test_error_after_queued_file_comes_in_order(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 200_000)
    from fastmux.http.static import StaticFiles

    conn = Conn(make_server(static=StaticFiles(str(tmp_path))), high_water=65536)
    conn.protocol.data_received(b"GET /f HTTP/1.1\r\n\r\n" + GET + b"BAD\r\n\r\n")
    for _ in range(100):
        conn.transport.drain()
    resps = parse_responses(conn.transport.take())
    assert [r.status for r in resps] == [200, 200, 400]  # file, listing of "/", error
