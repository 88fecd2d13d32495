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
