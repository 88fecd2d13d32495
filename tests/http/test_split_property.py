"""Property-based: a request stream split at arbitrary read boundaries gets
the same answers as when it arrives in one read.

The protocol is driven directly with a fake transport (fast); a few cases
also go through a real socket (test_e2e.py)."""
from __future__ import annotations

import os
import socket
import time
from typing import List, Tuple

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from http_helpers import Conn, make_server, parse_responses, recv_responses, strip_date
from support.http import chunked
from support.server import Server

# Each test runs on every protocol and parser twin (see conftest.http_twins).
pytestmark = pytest.mark.usefixtures("http_twins")

# FASTMUX_HYPOTHESIS_EXAMPLES=5000 for a longer hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("FASTMUX_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,;=/()", max_size=30).map(str.strip)
paths = st.sampled_from(["/", "/?q=1", "/x", "/a/b%20c", "/" + "p" * 300])
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
bodies = st.one_of(st.none(), st.binary(max_size=300))


@st.composite
def request(draw) -> Tuple[bytes, str, str, bytes]:
    method = draw(methods)
    path = draw(paths)
    headers = [("Host", "example")]
    for name, val in draw(st.lists(st.tuples(token, value), max_size=5)):
        if name.lower() in ("content-length", "transfer-encoding", "connection", "expect", "host", "upgrade"):
            continue
        headers.append((name, val))
    body = draw(bodies)
    is_chunked = body is not None and draw(st.booleans())
    raw_body = b""
    if body is not None:
        if is_chunked:
            headers.append(("Transfer-Encoding", "chunked"))
            raw_body, body = chunked(body, draw(st.lists(st.integers(1, 64), max_size=8)))
        else:
            headers.append(("Content-Length", str(len(body))))
            raw_body = body
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode() + raw_body, method, path, body or b""


def expected_status(method: str, path: str) -> int:
    if method not in ("GET", "HEAD"):
        return 405
    return 200 if path.split("?")[0] == "/" else 404


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return [p for p in pieces if p]


@SETTINGS
@given(reqs=st.lists(request(), min_size=1, max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_split_reads_same_responses(reqs, cuts):
    stream = b"".join(r[0] for r in reqs)
    whole = Conn(make_server()).feed(stream)
    pieces = Conn(make_server()).feed(*split(stream, cuts))
    assert strip_date(pieces) == strip_date(whole)
    resps = parse_responses(whole, [r[1] for r in reqs])
    assert [r.status for r in resps] == [expected_status(r[1], r[2]) for r in reqs]


@SETTINGS
@given(reqs=st.lists(request(), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_app_sees_every_body_whatever_the_splits(reqs, cuts):
    seen = []

    def app(req):
        seen.append((req.method, req.body))
        return 200, [("X-Len", str(len(req.body)))], req.body

    stream = b"".join(r[0] for r in reqs)
    conn = Conn(make_server(app=app))
    out = conn.feed(*split(stream, cuts))
    assert seen == [(r[1], r[3]) for r in reqs]
    resps = parse_responses(out, [r[1] for r in reqs])
    assert [r.body for r in resps] == [b"" if r[1] == "HEAD" else r[3] for r in reqs]


@SETTINGS
@given(garbage=st.binary(max_size=400), cuts=st.lists(st.integers(0, 10_000), max_size=10),
       prefix=st.booleans())
def test_garbage_never_breaks_the_protocol(garbage, cuts, prefix):
    stream = (b"GET / HTTP/1.1\r\n\r\n" if prefix else b"") + garbage
    conn = Conn(make_server())
    out = conn.feed(*split(stream, cuts))
    conn.protocol.eof_received()
    resps = parse_responses(out)  # whatever came out is well-formed HTTP
    for r in resps[:-1]:
        assert r.status == 200
    if resps and resps[-1].status >= 400:
        assert resps[-1].header("Connection") == "close" and conn.finished
    conn.lose()


@SETTINGS
@given(mutations=st.lists(st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=3)), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_mutated_requests_get_one_answer_each_or_an_error(mutations, cuts):
    base = bytearray(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
    for pos, junk in mutations:
        pos %= len(base)
        base[pos:pos + len(junk)] = junk
    stream = bytes(base)
    whole = Conn(make_server()).feed(stream)
    pieces_conn = Conn(make_server())
    pieces = pieces_conn.feed(*split(stream, cuts))
    # Splitting must not change the outcome (status codes, in order).  One
    # exception: llhttp reports an unknown method token and non-token bytes
    # alike, and the protocol tells them apart by looking at the start of
    # the read, so a split can turn a 501 into a 400: both are "rejected,
    # connection closed".
    def outcome(data):
        return [400 if r.status == 501 else r.status for r in parse_responses(data)]

    assert outcome(whole) == outcome(pieces)


# -- a few of the same cases over a real socket, through the CLI ----------------


@pytest.fixture(scope="module")
def real_server():
    with Server("http") as srv:
        yield srv


@settings(max_examples=int(os.environ.get("FASTMUX_HYPOTHESIS_SOCKET_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(reqs=st.lists(request(), min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_split_over_a_real_socket(real_server, reqs, cuts):
    stream = b"".join(r[0] for r in reqs)
    with real_server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in split(stream, cuts):
            s.sendall(piece)
            time.sleep(0.002)  # let the server read each piece on its own
        resps = recv_responses(s, len(reqs), [r[1] for r in reqs])
    assert [r.status for r in resps] == [expected_status(r[1], r[2]) for r in reqs]


# -- flow control: pipelined files, a slow reader, arbitrary drain points ------


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "big").write_bytes(bytes(range(256)) * 800)  # 200 KiB: streamed / sendfile
    (root / "small").write_bytes(b"s" * 100)  # inline
    return root


FILE_REQS = {
    "big": b"GET /big HTTP/1.1\r\n\r\n",
    "small": b"GET /small HTTP/1.1\r\n\r\n",
    "range": b"GET /big HTTP/1.1\r\nRange: bytes=70000-140000\r\n\r\n",
    "missing": b"GET /missing HTTP/1.1\r\n\r\n",
    "head": b"HEAD /big HTTP/1.1\r\n\r\n",
}


@settings(max_examples=int(os.environ.get("FASTMUX_HYPOTHESIS_EXAMPLES", "150")) // 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(FILE_REQS)), min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 10_000), max_size=6),
       drains=st.lists(st.booleans(), max_size=30), native=st.booleans(), close=st.booleans())
def test_pipelined_files_with_a_slow_reader(files_root, kinds, cuts, drains, native, close):
    from fastmux.http.static import StaticFiles

    stream = b"".join(FILE_REQS[k] for k in kinds)
    if close:
        stream += b"GET /small HTTP/1.1\r\nConnection: close\r\n\r\n"
    conn = Conn(make_server(static=StaticFiles(str(files_root)), limits=dict(max_pipeline=3)),
                high_water=65536, sendfile=native)
    fds = len(os.listdir("/proc/self/fd"))
    drain_points = iter(drains)
    for piece in split(stream, cuts):
        if conn.transport.reading or next(drain_points, True):
            conn.transport.drain()
        conn.protocol.data_received(piece)  # the test ignores pause_reading, as a race would
        assert len(os.listdir("/proc/self/fd")) <= fds + 1  # one file at a time, at most
    for _ in range(500):
        conn.transport.drain()
        if not conn.protocol._queue and not conn.protocol._deferred:
            break
    methods = ["HEAD" if k == "head" else "GET" for k in kinds] + (["GET"] if close else [])
    resps = parse_responses(conn.transport.take(), methods)
    big = (files_root / "big").read_bytes()
    expected = {"big": (200, big), "small": (200, b"s" * 100), "range": (206, big[70000:140001]),
                "missing": (404, None), "head": (200, b"")}
    assert len(resps) == len(methods)
    for kind, r in zip(kinds, resps):
        status, body = expected[kind]
        assert r.status == status
        if body is not None:
            assert r.body == body
    assert conn.finished == close
    conn.lose()
    assert len(os.listdir("/proc/self/fd")) == fds


ows = st.text(alphabet=" \t", max_size=3)
field_value = st.text(alphabet="abcxyz019 :;,=/\t", max_size=20).map(lambda v: v.strip(" \t"))


@st.composite
def headed_request(draw) -> Tuple[bytes, List[Tuple[str, str]]]:
    """A GET whose header values have OWS around them and colons inside;
    sometimes more headers than the compiled parser holds (32)."""
    fields = [("Host", "example")] + [
        (name, val) for name, val in draw(st.lists(st.tuples(token, field_value), max_size=40))
        if name.lower() not in ("content-length", "transfer-encoding", "connection", "expect", "host", "upgrade")
    ]
    lines = "".join(f"{n}:{draw(ows)}{v}{draw(ows)}\r\n" for n, v in fields)
    return f"GET /h?x=1 HTTP/1.1\r\n{lines}\r\n".encode(), fields


@SETTINGS
@given(reqs=st.lists(headed_request(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_app_sees_the_same_headers_whatever_the_splits(reqs, cuts):
    """Each request's headers reach the app the same, whether its head came
    whole in one read (the compiled parser hands the section over unsplit)
    or in pieces (header by header); get_header answers the same before and
    after the list is made."""
    names = sorted({n.lower() for _, fields in reqs for n, _ in fields} | {"x-missing"})
    seen = []

    def app(req):
        before = {n: req.get_header(n.upper()) for n in names}
        headers = req.headers
        after = {n: req.get_header(n) for n in names}
        seen.append((req.path, headers, before, after))
        return 200, [], b"ok"

    stream = b"".join(r[0] for r in reqs)
    Conn(make_server(app=app)).feed(*split(stream, cuts))
    expected = []
    for _, fields in reqs:
        firsts = dict.fromkeys(names)
        for n, v in reversed(fields):
            firsts[n.lower()] = v
        expected.append(("/h", fields, firsts, firsts))
    assert seen == expected
