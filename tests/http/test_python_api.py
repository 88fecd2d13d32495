"""``fastmux.http.serve``: a program serving its own app, as the README shows,
and the access log, through real server processes."""
from __future__ import annotations

import re
import signal
import sys
import textwrap

import pytest

import fastmux.http
from support.server import Server
from support.net import recv_until_closed

PROGRAM = textwrap.dedent('''
    import sys
    from fastmux.http import serve

    def app(request):
        if request.path == "/hi":
            return 200, [("Content-Type", "text/plain; charset=utf-8")], f"hi {request.query}\\n"
        return None  # then --dir, else the built-in / and 404

    sys.exit(serve(app, port=0, dir=sys.argv[1], workers=int(sys.argv[2]), access_log=sys.argv[3]))
''')


def get(srv: Server, target: str) -> bytes:
    with srv.connect() as c:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode())
        return recv_until_closed(c)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_program_serves_its_app_files_and_logs(tmp_path, workers):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.txt").write_text("file\n")
    (tmp_path / "prog.py").write_text(PROGRAM)
    log = tmp_path / "access.log"
    srv = Server("http", argv=[sys.executable, str(tmp_path / "prog.py"), str(tmp_path / "www"), str(workers),
                               str(log)])
    with srv:
        assert get(srv, "/hi?x=1").endswith(b"\r\n\r\nhi x=1\n")
        assert get(srv, "/f.txt").endswith(b"\r\n\r\nfile\n")
        assert b" 404 " in get(srv, "/none")[:20]
        assert srv.stop(signal.SIGTERM) == 0  # graceful, as the CLI
        srv.assert_clean_log()
    lines = log.read_text().splitlines()  # flushed at shutdown; workers each buffer their own
    assert sorted(re.search(r'"([^"]*)" (\d+) (\S+)$', line).groups() for line in lines) == [
        ("GET /f.txt HTTP/1.1", "200", "5"), ("GET /hi?x=1 HTTP/1.1", "200", "7"),
        ("GET /none HTTP/1.1", "404", "14")]


def test_access_log_on_the_command_line(tmp_path):
    log = tmp_path / "access.log"
    with Server("http", "--access-log", str(log)) as srv:
        for _ in range(3):
            assert get(srv, "/").endswith(b"Hello, World")
        srv.stop(signal.SIGTERM)
    assert len(re.findall(r'"GET / HTTP/1.1" 200 12\n', log.read_text())) == 3


def test_bad_options_are_errors_before_anything_listens(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        fastmux.http.serve(dir=str(tmp_path / "missing"), log_level=None)
    with pytest.raises(TypeError, match="unknown HTTP option"):
        fastmux.http.serve(max_bodyy=1, log_level=None)
    with pytest.raises(TypeError, match="callable"):
        fastmux.http.serve("mod:app", log_level=None)
