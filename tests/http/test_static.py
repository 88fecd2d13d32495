"""``--dir``: static files, driven through the protocol with a fake transport."""
from __future__ import annotations

import os
import time

import pytest

from fastmux.http.response import http_date
from fastmux.http.static import StaticFiles, content_type_for, parse_range

from http_helpers import Conn, make_server, parse_responses

# Each test runs on every protocol and parser twin (see conftest.http_twins).
pytestmark = pytest.mark.usefixtures("http_twins")

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "hello.txt").write_text("héllo wörld\n", encoding="utf-8")
    (d / "data.bin").write_bytes(PAYLOAD)
    (d / "big.bin").write_bytes(os.urandom(200_000))
    (d / "page.html").write_text("<p>hi</p>")
    (d / "style.css").write_text("p{}")
    (d / "empty").write_bytes(b"")
    (d / "sub").mkdir()
    (d / "sub" / "index.html").write_text("<h1>sub index</h1>")
    (d / "list").mkdir()
    (d / "list" / "a&b <c>.txt").write_text("x")
    (d / "list" / "dir'q").mkdir()
    (d / "list" / "sp ace.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("top secret")
    os.symlink(tmp_path / "secret.txt", d / "leak.txt")
    os.symlink(tmp_path, d / "up")
    os.symlink(d / "hello.txt", d / "alias.txt")
    os.mkfifo(d / "fifo")
    return d


def conn_for(root, **kw):
    return Conn(make_server(static=StaticFiles(str(root), **kw)))


def get(conn, path, *headers, method="GET"):
    head = b"%s %s HTTP/1.1\r\nHost: x\r\n" % (method.encode(), path.encode() if isinstance(path, str) else path)
    head += b"".join(h.encode() + b"\r\n" for h in headers)
    resps = parse_responses(conn.feed(head + b"\r\n"), [method])
    assert len(resps) == 1
    return resps[0]


def test_text_file_with_type_and_validators(root):
    c = conn_for(root)
    r = get(c, "/hello.txt")
    assert r.status == 200
    assert r.body == "héllo wörld\n".encode()
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Content-Length") == str(len(r.body))
    st = os.stat(root / "hello.txt")
    assert r.header("Last-Modified") == http_date(int(st.st_mtime)).decode()
    assert r.header("ETag") and r.header("Accept-Ranges") == "bytes"


@pytest.mark.parametrize("name,ctype", [
    ("page.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("data.bin", "application/octet-stream"),
    ("empty", "application/octet-stream"),
])
def test_content_types(root, name, ctype):
    r = get(conn_for(root), "/" + name)
    assert r.status == 200 and r.header("Content-Type") == ctype


def test_content_type_table():
    assert content_type_for("a.PNG") == b"image/png"
    assert content_type_for("x.tar.gz") == b"application/gzip"
    assert content_type_for("a.js") == b"text/javascript; charset=utf-8"
    assert content_type_for("a.json") == b"application/json; charset=utf-8"
    assert content_type_for(".bashrc") == b"application/octet-stream"


def test_head(root):
    r = get(conn_for(root), "/data.bin", method="HEAD")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == str(len(PAYLOAD))


def test_large_file_streams(root):
    c = conn_for(root)
    r = get(c, "/big.bin")
    assert r.body == (root / "big.bin").read_bytes()


def test_empty_file(root):
    r = get(conn_for(root), "/empty")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "0"


def test_if_modified_since(root):
    c = conn_for(root)
    lm = get(c, "/hello.txt").header("Last-Modified")
    r = get(c, "/hello.txt", f"If-Modified-Since: {lm}")
    assert r.status == 304 and r.body == b"" and r.header("Content-Length") is None
    assert r.header("Last-Modified") == lm
    older = http_date(os.stat(root / "hello.txt").st_mtime - 3600).decode()
    assert get(c, "/hello.txt", f"If-Modified-Since: {older}").status == 200
    assert get(c, "/hello.txt", "If-Modified-Since: not a date").status == 200
    # The connection is still usable after a 304 (no stray body bytes).
    assert get(c, "/hello.txt").status == 200


def test_if_none_match(root):
    c = conn_for(root)
    etag = get(c, "/hello.txt").header("ETag")
    assert get(c, "/hello.txt", f"If-None-Match: {etag}").status == 304
    assert get(c, "/hello.txt", f"If-None-Match: W/{etag}").status == 304
    assert get(c, "/hello.txt", 'If-None-Match: "other", ' + etag).status == 304
    assert get(c, "/hello.txt", "If-None-Match: *").status == 304
    # If-None-Match wins over If-Modified-Since.
    lm = get(c, "/hello.txt").header("Last-Modified")
    assert get(c, "/hello.txt", 'If-None-Match: "nope"', f"If-Modified-Since: {lm}").status == 200


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=100-", 100, len(PAYLOAD) - 1),
    ("bytes=-10", len(PAYLOAD) - 10, len(PAYLOAD) - 1),
    ("bytes=10-99999999", 10, len(PAYLOAD) - 1),
    ("bytes=-99999999", 0, len(PAYLOAD) - 1),
    ("BYTES=5-5", 5, 5),
])
def test_single_range_206(root, spec, start, end):
    r = get(conn_for(root), "/data.bin", f"Range: {spec}")
    assert r.status == 206
    assert r.body == PAYLOAD[start:end + 1]
    assert r.header("Content-Range") == f"bytes {start}-{end}/{len(PAYLOAD)}"
    assert r.header("Content-Length") == str(end - start + 1)


def test_range_on_large_file_uses_the_file_path(root):
    data = (root / "big.bin").read_bytes()
    r = get(conn_for(root, inline_max=100), "/big.bin", "Range: bytes=1000-150999")
    assert r.status == 206 and r.body == data[1000:151000]


@pytest.mark.parametrize("spec", ["bytes=99999-", "bytes=-0", f"bytes={len(PAYLOAD)}-"])
def test_unsatisfiable_range_416(root, spec):
    r = get(conn_for(root), "/data.bin", f"Range: {spec}")
    assert r.status == 416
    assert r.header("Content-Range") == f"bytes */{len(PAYLOAD)}"


@pytest.mark.parametrize("spec", ["bytes = 0-1", "bytes=0-1,5-6", "bytes=5-1", "items=0-1", "bytes=x-y", "bytes=-", "bytes"])
def test_ignored_range_gives_whole_file(root, spec):
    r = get(conn_for(root), "/data.bin", f"Range: {spec}")
    assert r.status == 200 and r.body == PAYLOAD


def test_if_range(root):
    c = conn_for(root)
    first = get(c, "/data.bin")
    etag, lm = first.header("ETag"), first.header("Last-Modified")
    assert get(c, "/data.bin", "Range: bytes=0-0", f"If-Range: {etag}").status == 206
    assert get(c, "/data.bin", "Range: bytes=0-0", f"If-Range: {lm}").status == 206
    assert get(c, "/data.bin", "Range: bytes=0-0", 'If-Range: "stale"').status == 200
    assert get(c, "/data.bin", "Range: bytes=0-0", "If-Range: Mon, 01 Jan 1990 00:00:00 GMT").status == 200


def test_parse_range_unit():
    assert parse_range(b"bytes=0-0", 1) == (0, 0)
    assert parse_range(b"bytes=0-", 0) == "unsatisfiable"
    assert parse_range(b"bytes=-5", 3) == (0, 2)


def test_index_html(root):
    r = get(conn_for(root), "/sub/")
    assert r.status == 200 and r.body == b"<h1>sub index</h1>"
    assert r.header("Content-Type") == "text/html; charset=utf-8"


def test_directory_without_slash_redirects(root):
    r = get(conn_for(root), "/sub?x=1")
    assert r.status == 301 and r.header("Location") == "/sub/?x=1"


def test_listing_is_escaped(root):
    r = get(conn_for(root), "/list/")
    assert r.status == 200 and r.header("Content-Type") == "text/html; charset=utf-8"
    text = r.body.decode()
    assert "a&amp;b &lt;c&gt;.txt" in text
    assert 'href="a%26b%20%3Cc%3E.txt"' in text
    assert "href=\"dir%27q/\"" in text and "dir'q/" in text
    assert "<c>" not in text


def test_listing_can_be_off(root):
    assert get(conn_for(root, listing=False), "/list/").status == 403


def test_root_listing(root):
    r = get(conn_for(root), "/")
    assert r.status == 200 and b"hello.txt" in r.body


def test_listing_shows_only_what_is_served(root):
    """Every link in a listing answers: symlinks leaving the root, dangling
    links and FIFOs are left out, links inside it stay."""
    os.symlink(root / "gone.txt", root / "dangling.txt")
    c = conn_for(root)
    body = get(c, "/").body.decode()
    hrefs = sorted(line.split('href="', 1)[1].split('"', 1)[0] for line in body.splitlines() if 'href="' in line)
    assert hrefs == ["alias.txt", "big.bin", "data.bin", "empty", "hello.txt", "list/", "page.html",
                     "style.css", "sub/"]
    for href in hrefs:
        assert get(c, "/" + href).status == 200, href


TRAVERSALS = [
    "/../secret.txt",
    "/sub/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%5csecret.txt",
    "/hello.txt%00.html",
    "//../secret.txt",
    "/leak.txt",  # symlink out of the root
    "/up/secret.txt",  # through a symlinked directory out of the root
    "/up/",
    "/fifo",  # not a regular file
    "/nonexistent",
    "/hello.txt/",  # a file is not a directory
    "*",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_root(root, path):
    r = get(conn_for(root), path)
    assert r.status == 404, (path, r)
    assert b"top secret" not in r.body


def test_symlink_inside_root_is_served(root):
    assert get(conn_for(root), "/alias.txt").body == "héllo wörld\n".encode()


def test_percent_encoded_names(root):
    assert get(conn_for(root), "/list/sp%20ace.txt").status == 200
    assert get(conn_for(root), "/list/a%26b%20%3Cc%3E.txt").status == 200


def test_post_to_static_is_405(root):
    c = conn_for(root)
    r = parse_responses(c.feed(b"POST /hello.txt HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"))[0]
    assert r.status == 405


def test_file_replaced_between_requests(root):
    c = conn_for(root)
    p = root / "hello.txt"
    assert get(c, "/hello.txt").body.startswith("h".encode())
    p.write_bytes(b"new content!")
    os.utime(p, (time.time() + 10, time.time() + 10))
    r = get(c, "/hello.txt")
    assert r.body == b"new content!" and r.header("Content-Length") == "12"


def test_no_fd_leak(root):
    c = conn_for(root, inline_max=100)
    before = len(os.listdir("/proc/self/fd"))
    for path in ["/hello.txt", "/big.bin", "/sub/", "/list/", "/leak.txt", "/nonexistent", "/sub"]:
        get(c, path)
        get(c, path, method="HEAD")
    get(c, "/big.bin", "Range: bytes=99999999-")
    assert len(os.listdir("/proc/self/fd")) == before


def test_dir_must_exist(tmp_path):
    with pytest.raises(NotADirectoryError):
        StaticFiles(str(tmp_path / "missing"))


def test_symlink_swapped_after_first_request(root, tmp_path):
    c = conn_for(root)
    (root / "swap.txt").write_text("inside")
    assert get(c, "/swap.txt").body == b"inside"
    os.unlink(root / "swap.txt")
    os.symlink(tmp_path / "secret.txt", root / "swap.txt")
    r = get(c, "/swap.txt")
    assert r.status == 404 and b"secret" not in r.body


def test_small_file_cache_sees_in_place_rewrites(root, monkeypatch):
    time_now = time.time
    monkeypatch.setattr(time, "time", lambda: time_now() + 10)  # every change counts as old: cached
    c = conn_for(root)
    p = root / "counter.txt"
    p.write_bytes(b"0001")
    old = time.time() - 100
    os.utime(p, (old, old))
    assert get(c, "/counter.txt").body == b"0001"
    assert get(c, "/counter.txt").body == b"0001"
    assert c.server.static._content  # it is in the cache
    st = os.stat(p)
    time.sleep(0.02)  # past the kernel's timestamp tick
    with open(p, "r+b") as f:  # same size, and the old mtime put back: only ctime tells
        f.write(b"0002")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    next_second(c)  # past the response cache's bound: the small-file cache decides
    assert get(c, "/counter.txt").body == b"0002"


def test_cached_file_is_cached(root, monkeypatch):
    p = root / "old.txt"
    p.write_bytes(b"cached")
    c = conn_for(root)
    time_now = time.time
    monkeypatch.setattr(time, "time", lambda: time_now() + 10)  # the file's change is "old"
    assert get(c, "/old.txt").body == b"cached"
    opens = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opens.append(a) or real_open(*a, **k))
    assert get(c, "/old.txt").body == b"cached"
    assert get(c, "/old.txt", "Range: bytes=1-2").body == b"ac"
    assert opens == []  # served from the cache after one stat


# -- the response cache: complete answers for the clock's current second ------


def next_second(c):
    """Turn the server's clock to its next second, as a running server's tick does."""
    c.wall = getattr(c, "wall", time.time()) + 1.0
    c.server.tick(wall=c.wall)


@pytest.fixture
def settled(monkeypatch):
    """Every file's last change counts as older than the timestamp tick (cacheable)."""
    time_now = time.time
    monkeypatch.setattr(time, "time", lambda: time_now() + 10)


def count_stats(monkeypatch):
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: stats.append(a) or real_stat(*a, **k))
    return stats


def test_response_cache_replays_the_answer_until_the_second_turns(root, settled, monkeypatch):
    c = conn_for(root)
    first = c.feed(b"GET /hello.txt HTTP/1.1\r\n\r\n")
    stats = count_stats(monkeypatch)
    assert c.feed(b"GET /hello.txt HTTP/1.1\r\n\r\n") == first
    assert stats == []  # not even a stat
    next_second(c)
    again = c.feed(b"GET /hello.txt HTTP/1.1\r\n\r\n")
    assert len(stats) == 1  # checked afresh once the second turned
    assert again != first and parse_responses(again)[0].body == parse_responses(first)[0].body
    # The Date is the clock's current one, never the cached response's.
    assert parse_responses(again)[0].header("Date") == c.server.clock.date.decode()


def test_response_cache_keeps_each_variant_apart(root, settled):
    server = make_server(static=StaticFiles(str(root)))
    for _ in range(2):  # made, then replayed
        c = Conn(server)
        assert get(c, "/data.bin").body == PAYLOAD
        head = get(c, "/data.bin", method="HEAD")
        assert head.body == b"" and head.header("Content-Length") == str(len(PAYLOAD))
        assert head.header("Connection") == "keep-alive"
        closing = parse_responses(c.feed(b"GET /data.bin HTTP/1.1\r\nConnection: close\r\n\r\n"))[0]
        assert closing.header("Connection") == "close" and closing.body == PAYLOAD and c.finished
        c = Conn(server)
        last = parse_responses(c.feed(b"HEAD /data.bin HTTP/1.0\r\n\r\n"), ["HEAD"])[0]
        assert last.header("Connection") == "close" and last.body == b"" and c.finished
    assert server.static._hot[b"/data.bin"].count(None) == 0  # all four were kept


@pytest.mark.parametrize("change", ["rewrite", "delete", "symlink-out", "symlink-in"])
def test_response_cache_bound_after_a_change(root, settled, tmp_path, change):
    """A change is answered as before for the rest of the clock's second at
    most; after the tick the answer is the file's (or 404), and a file
    outside the root is never served."""
    c = conn_for(root)
    p = root / "page.html"
    before = get(c, "/page.html").body
    assert before == b"<p>hi</p>"
    if change == "rewrite":
        p.write_bytes(b"<p>changed, and longer</p>")
    else:
        p.unlink()
        if change == "symlink-out":
            os.symlink(tmp_path / "secret.txt", p)
        elif change == "symlink-in":
            os.symlink(root / "style.css", p)
    assert get(c, "/page.html").body == before  # within the bound
    next_second(c)
    r = get(c, "/page.html")
    expected = {"rewrite": (200, b"<p>changed, and longer</p>"), "delete": (404, None),
                "symlink-out": (404, None), "symlink-in": (200, b"p{}")}[change]
    assert r.status == expected[0] and b"secret" not in r.body
    if expected[1] is not None:
        assert r.body == expected[1] and r.header("Content-Length") == str(len(expected[1]))


def test_response_cache_holds_nothing_recently_changed(root):
    """A file changed within the timestamp tick may still be being written:
    its answer is not kept, so a rewrite in the same second is seen at once."""
    c = conn_for(root)
    p = root / "fresh.txt"
    p.write_bytes(b"0001")
    assert get(c, "/fresh.txt").body == b"0001"
    p.write_bytes(b"0002")
    assert get(c, "/fresh.txt").body == b"0002"
    assert not c.server.static._hot


def test_conditional_and_range_requests_bypass_the_response_cache(root, settled):
    c = conn_for(root)
    first = get(c, "/data.bin")
    assert get(c, "/data.bin").body == PAYLOAD  # cached now
    etag, lm = first.header("ETag"), first.header("Last-Modified")
    assert get(c, "/data.bin", f"If-None-Match: {etag}").status == 304
    assert get(c, "/data.bin", f"if-none-match: {etag}").status == 304
    assert get(c, "/data.bin", f"If-Modified-Since: {lm}").status == 304
    r = get(c, "/data.bin", "Range: bytes=1-2")
    assert r.status == 206 and r.body == PAYLOAD[1:3]
    assert get(c, "/data.bin", "RANGE: bytes=1-2").status == 206
    assert get(c, "/data.bin", "Range: bytes=99999-").status == 416
    assert get(c, "/data.bin", "Range: bytes=0-0", f"If-Range: {etag}").status == 206
    # Headers of the same lengths that change nothing get the cached answer.
    for header in ("Cache-Control: no-cache", "If-Range: " + etag, "Range: ", "Accept: */*"):
        r = get(c, "/data.bin", header)
        assert r.status == 200 and r.body == PAYLOAD, header
    # What a conditional or range request got is not kept for plain ones.
    for header in (f"If-None-Match: {etag}", f"If-Modified-Since: {lm}", "Range: bytes=1-2", "Range: bytes=x"):
        next_second(c)
        get(c, "/data.bin", header)
        for method in ("GET", "HEAD"):
            r = get(c, "/data.bin", method=method)
            assert r.status == 200 and r.header("Content-Length") == str(len(PAYLOAD)), (header, method)
    assert get(c, "/data.bin").body == PAYLOAD


def test_bytes_torn_by_a_write_are_not_kept(root, settled, monkeypatch):
    """A write while the file is read (same size, so the length check passes)
    may have torn what was read: that is served once, never replayed."""
    c = conn_for(root)
    p = root / "counter.txt"
    p.write_bytes(b"0001")
    real_pread = os.pread

    def pread_then_write(fd, n, offset):
        data = real_pread(fd, n, offset)
        time.sleep(0.02)  # past the kernel's timestamp tick
        p.write_bytes(b"0002")
        return data

    monkeypatch.setattr(os, "pread", pread_then_write)
    assert get(c, "/counter.txt").body == b"0001"
    monkeypatch.setattr(os, "pread", real_pread)
    assert get(c, "/counter.txt").body == b"0002"  # the same second: it was not kept


def test_response_cache_covers_index_and_head_of_large_files(root, settled, monkeypatch):
    c = conn_for(root, inline_max=100)
    index = get(c, "/sub/")
    big = get(c, "/big.bin", method="HEAD")
    stats = count_stats(monkeypatch)
    assert get(c, "/sub/").body == index.body == b"<h1>sub index</h1>"
    assert get(c, "/big.bin", method="HEAD").raw_head == big.raw_head
    assert stats == []
    assert get(c, "/big.bin").body == (root / "big.bin").read_bytes()  # a sendfile: not kept
    assert stats
    (root / "sub" / "index.html").unlink()
    next_second(c)
    assert b"Directory listing" in get(c, "/sub/").body


def test_response_cache_is_bounded(root, settled, monkeypatch):
    c = conn_for(root, cache_max=len(PAYLOAD) + 1000)
    get(c, "/data.bin")
    get(c, "/hello.txt")
    get(c, "/data.bin", method="HEAD")
    get(c, "/page.html")
    static = c.server.static
    assert static._hot_bytes <= static.cache_max
    assert get(c, "/page.html").body == b"<p>hi</p>"
    next_second(c)
    get(c, "/page.html")
    assert list(static._hot) == [b"/page.html"]  # the new second starts empty
    monkeypatch.setattr("fastmux.http.static._PATHS_MAX", 2)
    for target in ("/hello.txt", "/style.css", "/page.html?v=2"):
        get(c, target)
    assert list(static._hot) == [b"/page.html", b"/hello.txt"]
