"""``fastmux serve`` dispatch, ``fastmux client``, ``python -m fastmux``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Set, Tuple

import pytest

from support.net import connect, recv_line
from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd
from fastmux.servers import kinds


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
    from fastmux.cli import main

    monkeypatch.setitem(kinds.KINDS, "echo", kinds.Kind("fastmux.no_such_module", "gone"))
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "echo", "--port", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not available" in err and "fastmux.no_such_module" in err


# Run the command line in a child and list, at exit, the fastmux modules it
# imported (-X importtime misses those loaded by importlib.import_module).
IMPORTED = (
    "import atexit, sys\n"
    "atexit.register(lambda: print(*sorted(m for m in sys.modules if m.startswith('fastmux')), file=sys.stderr))\n"
    "from fastmux.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def imported_by(*args: str) -> Tuple[subprocess.CompletedProcess, Set[str]]:
    proc = subprocess.run([sys.executable, "-c", IMPORTED, *args], capture_output=True, text=True, timeout=30,
                          env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    return proc, set(proc.stderr.split())


def command_modules() -> Set[str]:
    from fastmux.cli import BENCHES, COMMANDS

    return ({module for module, _ in [*COMMANDS.values(), *BENCHES.values()]}
            | {kind.module for kind in kinds.KINDS.values()})


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["bench", "--help"]])
def test_the_dispatcher_imports_no_command(args):
    proc, modules = imported_by(*args)
    assert not {m for m in modules if m.startswith(("fastmux.benchmarks", "fastmux.servers", "fastmux.http"))}
    assert not modules & command_modules()
    if "--help" in args:  # every command is listed with its help, all the same
        from fastmux.cli import BENCHES, COMMANDS

        for name, (_, help_) in (BENCHES if "bench" in args else COMMANDS).items():
            assert name in proc.stdout and help_[:30] in " ".join(proc.stdout.split())


def test_serve_kind_help_imports_that_kind_only():
    proc, modules = imported_by("serve", "echo", "--help")
    assert "--port" in proc.stdout
    assert {"fastmux.servers.cli", "fastmux.servers.echo"} <= modules
    assert not {m for m in modules if m.startswith(("fastmux.benchmarks", "fastmux.http"))}
    assert modules & command_modules() == {"fastmux.servers.cli", "fastmux.servers.echo"}


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
        kinds.load_kind("http")
    except ImportError as exc:
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


# ---- messages and options ----------------------------------------------------

def test_serve_without_a_kind_names_kind_and_lists_them():
    proc = run_cli("serve")
    assert proc.returncode == 2
    last = proc.stderr.splitlines()[-1]
    assert "KIND is required" in last and "options" not in last
    assert all(kind in last for kind in kinds.KINDS)


@pytest.mark.parametrize("kind, stream", [("echo", True), ("udp-echo", False)])
def test_datagram_kinds_offer_no_unix_socket_or_backlog(kind, stream):
    proc = run_cli("serve", kind, "--help")
    assert proc.returncode == 0
    assert ("--unix" in proc.stdout) is stream and ("--backlog" in proc.stdout) is stream
    if not stream:
        proc = run_cli("serve", kind, "--unix", "/tmp/never.sock")
        assert proc.returncode == 2 and f"fastmux serve {kind}: error: unrecognized arguments: --unix" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--port", "abc"], "argument --port: expected a port number 0-65535, got 'abc'"),
    (["--port", "70000"], "argument --port: expected a port number 0-65535, got '70000'"),
    (["--grace", "-5"], "argument --grace: expected a number of seconds >= 0, got '-5'"),
    (["--workers", "-1"], "argument --workers: expected a whole number >= 0, got '-1'"),
])
def test_bad_numbers_are_refused_plainly(args, message):
    proc = run_cli("serve", "echo", *args)
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == f"fastmux serve echo: error: {message}"


def test_defaults_are_shown():
    assert "least severe messages logged (default: info)" in " ".join(run_cli("serve", "echo", "--help").stdout.split())
    help_ = " ".join(run_cli("client", "tcp", "--help").stdout.split())
    assert "connect timeout (default: 10.0)" in help_ and "last words (default: 2.0)" in help_


def test_client_mode_help_is_the_modes_own():
    tcp, udp = run_cli("client", "tcp", "--help"), run_cli("client", "udp", "--help")
    assert tcp.stdout.startswith("usage: fastmux client tcp ") and "half-closes" in tcp.stdout
    assert udp.stdout.startswith("usage: fastmux client udp ") and "datagram" in udp.stdout


def test_unix_socket_in_a_missing_directory_names_the_path(tmp_path):
    path = tmp_path / "missing" / "e.sock"
    proc = run_cli("serve", "echo", "--unix", str(path), "--loop", LOOP)
    assert proc.returncode == 1 and str(path) in proc.stderr and "No such file or directory" in proc.stderr


# argparse ignores errors writing help from Python 3.11 on; before, the
# write fails like any other and fastmux ends as for `info`.
_HELP_CODE = 0 if sys.version_info >= (3, 11) else 128 + signal.SIGPIPE


@pytest.mark.parametrize("args, code", [
    (["info"], 128 + signal.SIGPIPE),  # as if killed by SIGPIPE, like C tools
    (["--help"], _HELP_CODE),
    (["serve", "--help"], _HELP_CODE),
])
def test_stdout_closed_early_exits_quietly(args, code):
    # the reader is gone before anything is written: every write gets EPIPE
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(fastmux_cmd(*args), stdout=w, stderr=subprocess.PIPE, text=True, timeout=30,
                              env=child_env(), cwd=str(ROOT))
    finally:
        os.close(w)
    assert proc.stderr == "" and proc.returncode == code


@pytest.mark.parametrize("source, error", [
    ("def app(request):\n    return None +\n", "SyntaxError: invalid syntax ({path}:2)"),
    ("import no_such_module_for_fastmux_tests\n", "ModuleNotFoundError: No module named 'no_such_module_for_fastmux_tests'"),
    ("raise RuntimeError('not configured')\n", "RuntimeError: not configured"),
])
def test_app_module_that_fails_to_import_is_one_line(tmp_path, source, error):
    path = tmp_path / "brokenapp.py"
    path.write_text(source)
    proc = subprocess.run(fastmux_cmd("serve", "http", "--port", "0", "--app", "brokenapp:app", "--loop", LOOP),
                          capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "fastmux serve http" in line or "Traceback" in line]
    assert lines == [f"fastmux serve http: --app brokenapp:app: cannot import brokenapp: "
                     f"{error.format(path=path)}"]


@pytest.mark.parametrize("how", ["second signal", "grace"])
def test_forced_shutdown_says_why(tmp_path, how):
    # a stalled upload holds the first SIGTERM until the grace period ends
    with Server("upload", "--dir", str(tmp_path), "--grace", "60" if how == "second signal" else "0.3") as srv:
        with connect(srv.address) as c:
            c.sendall(b"put|slow.bin|100\n")
            assert recv_line(c) == b"ready\n"
            srv.send_signal(signal.SIGTERM)
            if how == "second signal":
                time.sleep(0.3)
                srv.send_signal(signal.SIGTERM)
            assert srv.proc.wait(10) == 0
        log = srv.stderr()
    if how == "second signal":
        assert "stopped (forced by a second signal)" in log
    else:
        assert "stopped (forced by the end of the grace period)" in log
    assert "exceeded" not in log


def test_send_to_a_server_that_is_not_an_upload_server(tmp_path):
    data = tmp_path / "f.txt"
    data.write_text("hello\n")
    with Server("echo") as srv:
        proc = run_cli("send", str(data), srv.address)
        assert srv.stop() == 0
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"fastmux send: {srv.address} did not answer as an upload server "
                                   f"(it answered 'put|f.txt|6'); is it `fastmux serve upload`?")


def test_ctrl_c_during_send_ends_the_progress_line(tmp_path, monkeypatch):
    import io
    import socket

    from fastmux.servers import send
    from fastmux.servers.progress import Progress

    out = io.StringIO()
    monkeypatch.setattr(send, "Progress", lambda total, label, enabled: Progress(total, label, out, True))
    monkeypatch.setattr(send, "CHUNK", 1024)
    real_sendfile = socket.socket.sendfile
    calls = []

    def sendfile_then_ctrl_c(self, *args):
        calls.append(args)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_sendfile(self, *args)

    monkeypatch.setattr(socket.socket, "sendfile", sendfile_then_ctrl_c)
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 4096)
    with Server("upload", "--dir", str(tmp_path / "..")) as srv:
        with pytest.raises(KeyboardInterrupt):
            send.send_file(str(data), srv.address, name="interrupted.bin")
        assert srv.stop() == 0
    text = out.getvalue()
    assert "1.0 KiB/4.0 KiB" in text and text.endswith("\n") and text.count("\n") == 1
