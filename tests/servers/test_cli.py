"""``fastmux serve`` dispatch, ``fastmux client``, ``python -m fastmux``."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd
from fastmux.servers import cli


def run_cli(*args, input=None, timeout=30):
    return subprocess.run(fastmux_cmd(*args), input=input, capture_output=True, text=True, timeout=timeout,
                          env=child_env(), cwd=str(ROOT))


def test_serve_help_lists_kinds():
    proc = run_cli("serve", "--help")
    assert proc.returncode == 0
    for kind in ("echo", "udp-echo", "menu", "upload", "http"):
        assert kind in proc.stdout


def test_kind_help_shows_its_options():
    proc = run_cli("serve", "upload", "--help")
    assert proc.returncode == 0
    assert "--max-size" in proc.stdout and "--workers" in proc.stdout and "--backend" in proc.stdout


def test_unknown_kind():
    proc = run_cli("serve", "gopher")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_missing_kind_module_is_reported_clearly(monkeypatch, capsys):
    monkeypatch.setitem(cli.KINDS, "echo", cli.Kind("fastmux.no_such_module", "gone"))
    assert cli.run(argparse.Namespace(kind="echo", options=[])) == 2
    err = capsys.readouterr().err
    assert "not available" in err and "fastmux.no_such_module" in err


def test_kind_registry_imports_lazily():
    code = ("import sys, fastmux.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith(('fastmux.http', 'fastmux.servers.upload'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_client_tcp_against_menu():
    with Server("menu") as srv:
        proc = run_cli("client", "tcp", srv.address, "--loop", LOOP, input="0\n1234\nexit\n")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines == ["欢迎致电 10086,请输入1xxx,0转人工服务.", "通过可能会被录音.balabala一大推", "请重新输入."]
        assert srv.stop() == 0


def test_client_tcp_end_of_input_against_echo():
    with Server("echo") as srv:
        t0 = time.monotonic()
        proc = run_cli("client", "tcp", srv.address, "--loop", LOOP, input="one\ntwo")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "one\ntwo"
        assert time.monotonic() - t0 < 10
        assert srv.stop() == 0


def test_client_reports_refused_connection():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("client", "tcp", f"127.0.0.1:{port}", "--loop", LOOP, input="")
    assert proc.returncode == 1 and "cannot connect" in proc.stderr


def test_bad_target():
    proc = run_cli("send", "/etc/hostname", "nonsense", input="")
    assert proc.returncode == 1 and "HOST:PORT" in proc.stderr


def test_python_dash_m_fastmux_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("fastmux ")


def test_client_stdin_from_a_regular_file(tmp_path):
    # epoll cannot watch a regular file: the client reads it in a thread instead
    script = tmp_path / "input.txt"
    script.write_text("0\nexit\n")
    with Server("menu") as srv:
        with open(script, "rb") as stdin:
            proc = subprocess.run(fastmux_cmd("client", "tcp", srv.address, "--loop", LOOP), stdin=stdin,
                                  capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(ROOT))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[1] == "通过可能会被录音.balabala一大推"
        assert srv.stop() == 0


def test_serve_http_through_the_dispatcher():
    try:
        cli.load_kind("http")
    except ImportError as exc:
        import pytest

        pytest.skip(f"fastmux.http not available: {exc}")
    from support.net import connect, recv_until_closed

    with Server("http") as srv:
        with connect(srv.address) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = recv_until_closed(c)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert srv.stop() == 0


def test_progress_bar_draws_only_when_enabled():
    import io

    from fastmux.servers.progress import Progress

    out = io.StringIO()
    bar = Progress(1 << 20, "f", stream=out)  # StringIO is not a tty: off
    bar.update(1 << 19, force=True)
    bar.finish(1 << 20)
    assert out.getvalue() == ""
    bar = Progress(1 << 20, "f", stream=out, enabled=True)
    bar.update(1 << 19, force=True)
    bar.finish(1 << 20)
    text = out.getvalue()
    assert "\r" in text and " 50.0%" in text and "100.0%" in text and text.endswith("\n")
