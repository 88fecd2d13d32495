"""HTTP server benchmark: ``fastmux bench http``, runnable from a checkout,
plus micro-benchmarks of the protocol's hot operations.

    python bench/http_bench.py                          # all workloads and servers, 3 rounds of 5 s
    python bench/http_bench.py --duration 3 --rounds 1 --workloads hello
    python bench/http_bench.py --servers fastmux,nginx --json out.json
    python bench/http_bench.py --workloads uvicorn      # uvicorn + Starlette on asyncio, uvloop, fastmux.asyncio
    pytest bench/http_bench.py                          # micro-benchmarks (pytest-benchmark)

Notes
-----
* The figure to compare is the server's own CPU time per request (user, and
  user+system), from /proc/<pid>/stat over the measured wrk run: on a 2-core
  box wrk saturates its core first, so requests/s bunch together.  The
  README's HTTP table holds measured figures.
* Server on CPU 0, wrk (and this process) on CPU 1; rounds interleaved;
  medians.  Anything else running on the machine shows up in these numbers:
  compare servers within one run, not across runs.
* /proc CPU times count 10 ms ticks; use runs of a few seconds.
* The micro-benchmarks drive the protocol object with a fake transport:
  they measure fastmux.http's own per-request Python cost, without the
  reactor and the kernel.
"""
import argparse
import sys
from pathlib import Path

# Run against this checkout's fastmux, whether or not one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmux.benchmarks import http as http_bench  # noqa: E402

try:
    import pytest
except ImportError:  # pragma: no cover - the script needs no pytest
    pytest = None  # type: ignore[assignment]


class _Transport:
    """Just enough transport for the protocol; writes go nowhere."""

    def write(self, data):
        pass

    def get_extra_info(self, name, default=None):
        return default

    def get_write_buffer_size(self):
        return 0


WRK_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER_GET = (
    b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)


def _protocol(**server_kw):
    from fastmux.http import HttpServer

    server = HttpServer(None, **server_kw)
    proto = server()
    proto.connection_made(_Transport())
    proto.data_received(WRK_GET)  # the first request of a connection takes the general path
    return proto


if pytest is not None:
    @pytest.fixture
    def bench(request):
        try:
            return request.getfixturevalue("benchmark")
        except pytest.FixtureLookupError:
            pytest.skip("pytest-benchmark is not installed")

    def test_hello_wrk_request(bench):
        bench(_protocol().data_received, WRK_GET)

    def test_hello_browser_request(bench):
        bench(_protocol().data_received, BROWSER_GET)

    def test_hello_pipelined_16(bench):
        bench(_protocol().data_received, WRK_GET * 16)

    def test_static_1k_just_written(bench, tmp_path):
        # Changed in the last 2 s: read from the file on every request.
        from fastmux.http.static import StaticFiles

        (tmp_path / "1k.bin").write_bytes(b"x" * 1024)
        proto = _protocol(static=StaticFiles(str(tmp_path)))
        bench(proto.data_received, b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")

    def test_static_1k_settled(bench, tmp_path, monkeypatch):
        # The usual case: the file has not changed lately, so its bytes are cached.
        import time

        from fastmux.http.static import StaticFiles

        (tmp_path / "1k.bin").write_bytes(b"x" * 1024)
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() + 60)
        proto = _protocol(static=StaticFiles(str(tmp_path)))
        bench(proto.data_received, b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")

    def test_app_route(bench):
        proto = _protocol(app=lambda req: (200, [("Content-Type", "text/plain")], "hi"))
        bench(proto.data_received, b"GET /hi HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")

    def test_date_refresh(bench):
        from fastmux.http.response import Clock

        clock = Clock()
        seconds = iter(range(10**9, 10**10))
        bench(lambda: clock.refresh(next(seconds)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="http_bench.py", description="HTTP server CPU per request")
    http_bench.add_arguments(parser)
    return http_bench.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
