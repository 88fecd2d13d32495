"""The access log: one Common Log Format line per response, buffered."""
from __future__ import annotations

import io
import re

import pytest

from fastmux.http.access_log import AccessLog

from http_helpers import Conn, make_server, parse_responses

pytestmark = pytest.mark.usefixtures("http_twins")

CLF = re.compile(r'^(\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d{3}) (\d+|-)$')


def logged(conn: Conn, buf: io.BytesIO):
    conn.protocol._server.access_log.flush()
    lines = buf.getvalue().decode("latin-1").splitlines()
    out = []
    for line in lines:
        m = CLF.match(line)
        assert m, line
        out.append(m.groups())
    return out


def test_every_response_is_logged_even_hello():
    buf = io.BytesIO()
    conn = Conn(make_server(access_log=AccessLog(buf)))
    data = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"HEAD / HTTP/1.1\r\n\r\nGET /nope?q=1 HTTP/1.0\r\n\r\n")
    assert [r.status for r in parse_responses(data, ["GET"] * 3 + ["HEAD", "GET"])] == [200, 200, 200, 200, 404]
    assert logged(conn, buf) == [("127.0.0.1", "GET / HTTP/1.1", "200", "12")] * 3 + [
        ("127.0.0.1", "HEAD / HTTP/1.1", "200", "-"),
        ("127.0.0.1", "GET /nope?q=1 HTTP/1.0", "404", "14"),
    ]


def test_bad_requests_are_logged_without_a_request_line():
    buf = io.BytesIO()
    conn = Conn(make_server(access_log=AccessLog(buf)))
    conn.feed(b"BAD\x01 REQUEST\r\n\r\n")
    assert logged(conn, buf) == [("127.0.0.1", "-", "400", "16")]


def test_lines_are_buffered_until_the_tick():
    class Counting(io.BytesIO):
        writes = 0

        def write(self, b):
            Counting.writes += 1
            return super().write(b)

    raw = Counting()
    log = AccessLog(io.BufferedWriter(raw, buffer_size=65536))
    server = make_server(access_log=log)
    conn = Conn(server)
    conn.feed(b"GET / HTTP/1.1\r\n\r\n" * 50)
    assert Counting.writes == 0 and raw.getvalue() == b""
    server.tick()
    assert Counting.writes == 1 and raw.getvalue().count(b"\n") == 50


def test_quotes_in_the_target_cannot_forge_fields():
    buf = io.BytesIO()
    conn = Conn(make_server(access_log=AccessLog(buf)))
    conn.feed(b'GET /a"b HTTP/1.1\r\n\r\n')
    ((_, line, status, _),) = logged(conn, buf)
    assert line == "GET /a%22b HTTP/1.1" and status == "404"
