"""``fastmux bench http``'s asyncio rows: the httptools protocol on
fastmux.asyncio beside uvloop and asyncio, and uvicorn + Starlette on each
loop -- run end to end at a tiny size (wrk's shortest run is 1 s)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from fastmux.benchmarks import http as http_bench

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux-only")
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
needs_uvicorn = pytest.mark.skipif(not http_bench.uvicorn_installed(),
                                   reason="needs uvicorn, starlette and httptools")


def _bench(tmp_path: Path, *args: str) -> dict:
    from fastmux.cli import main

    report = tmp_path / "http.json"
    rc = main(["bench", "http", "--duration", "1", "--warmup", "0", "--rounds", "1", "--connections", "4",
               "--json", str(report), *args])
    assert rc == 0
    return json.loads(report.read_text())


@needs_wrk
def test_httptools_protocol_on_fastmux_asyncio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(tmp_path, "--workloads", "hello,app", "--servers", "fastmux.asyncio")
    assert [(r["workload"], r["server"]) for r in doc["medians"]] == [("hello", "fastmux.asyncio"),
                                                                    ("app", "fastmux.asyncio")]
    for run in doc["runs"]:
        assert run["ok"] and run["requests"] > 100 and run["socket_errors"] == 0
    out = capsys.readouterr().out
    assert "fastmux.asyncio + httptools (raw)" in out and "fastmux.asyncio + httptools + app" in out


@needs_wrk
@needs_uvicorn
def test_uvicorn_starlette_on_fastmux_asyncio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(tmp_path, "--workloads", "uvicorn", "--servers", "fastmux.asyncio")
    [run] = doc["runs"]
    assert run["ok"] and run["requests"] > 100 and run["cpu_user_s"] + run["cpu_sys_s"] > 0
    assert "uvicorn + Starlette on fastmux.asyncio" in capsys.readouterr().out


@needs_uvicorn
def test_uvicorn_takes_fastmux_asyncio_as_its_loop() -> None:
    """The installed uvicorn accepts ``--loop module:factory`` and uses that factory."""
    import fastmux.asyncio
    from uvicorn.config import Config

    config = Config(app=http_bench.starlette_app, loop=http_bench.UVICORN_LOOPS["fastmux.asyncio"])
    assert config.get_loop_factory() is fastmux.asyncio.new_event_loop


def test_uvicorn_workload_skipped_with_a_message_when_not_installed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from fastmux.cli import main

    monkeypatch.setattr(http_bench, "uvicorn_installed", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # wrk's presence is not the point here
    assert "uvicorn" not in http_bench.available_workloads()
    assert main(["bench", "http", "--workloads", "uvicorn", "--servers", "fastmux.asyncio"]) == 2
    err = capsys.readouterr().err
    assert "skipping the uvicorn workload" in err and "pip install uvicorn starlette httptools" in err
