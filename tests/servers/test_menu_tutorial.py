"""The tutorial's own menu clients against ``fastmux serve menu``.

They send what the user typed with no newline and wait up to 5 s for the
answer; the menu answers such input after ``--quiet`` seconds of silence,
while newline-framed input keeps exact line semantics."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import pytest

from support.net import recv_line
from support.server import Server

from test_menu import AGAIN, AGENT, WELCOME, session
BALANCE = "话费余额查询:余额将以短信方式发送到您的手机.\n".encode()

# The tutorial's client for its 8020/8021 select server, as the tutorial
# prints it (Python 2; the 10086 client is the same with port 8005).
TUTORIAL_CLIENT_PY2 = '''\
#!/usr/bin/env python
# -*- coding:utf-8 -*-
import socket

ip_port = ('127.0.0.1',{port})
sk = socket.socket()
sk.connect(ip_port)
sk.settimeout(5)

while True:
    data = sk.recv(1024)
    print 'receive:',data
    inp = raw_input('please input:')
    sk.sendall(inp)
    if inp == 'exit':
        break

sk.close()
'''

# Run before the tutorial's code: its fixed port goes to the test server's.
PY2_REDIRECT = '''\
import socket, sys
_PORTS = dict((int(k), int(v)) for k, v in (a.split("=") for a in sys.argv[1:]))
class _Redirected(socket.socket):
    def connect(self, address):
        return super(_Redirected, self).connect((address[0], _PORTS[address[1]]))
socket.socket = _Redirected
'''

# The same client ported to Python 3 and nothing else: still no newline.
TUTORIAL_CLIENT_PY3 = '''\
import socket
import sys

ip_port = ('127.0.0.1', int(sys.argv[1]))
sk = socket.socket()
sk.connect(ip_port)
sk.settimeout(5)
while True:
    data = sk.recv(1024)
    print('receive:', data.decode())
    inp = input('please input:')
    sk.sendall(inp.encode())
    if inp == 'exit':
        break
sk.close()
'''

TYPED = "0\n1234\n1000\nexit\n"


def python2() -> Optional[str]:
    for candidate in (os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python"),
                      shutil.which("python2.7"), shutil.which("python2")):
        if candidate and os.access(candidate, os.X_OK):
            try:
                out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[0])"],
                                     capture_output=True, text=True, timeout=30)
            except OSError:
                continue
            if out.stdout.strip() == "2":
                return candidate
    return None


def check_session(stdout: str) -> None:
    replies = [part.replace("please input:", "").strip() for part in stdout.split("receive:")[1:]]
    assert replies == [WELCOME.decode().strip(), AGENT.decode().strip(), AGAIN.decode().strip(),
                       BALANCE.decode().strip()], stdout


def test_tutorial_client_ported_to_python3(tmp_path: Path):
    script = tmp_path / "tutorial_client.py"
    script.write_text(TUTORIAL_CLIENT_PY3)
    with Server("menu") as srv:
        proc = subprocess.run([sys.executable, str(script), str(srv.port)], input=TYPED,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        check_session(proc.stdout)


@pytest.mark.parametrize("tutorial_ports", [(8005,), (8020, 8021)], ids=["10086-client", "8020-8021-clients"])
def test_tutorial_clients_unchanged_under_python2(tmp_path: Path, tutorial_ports):
    py2 = python2()
    if py2 is None:
        pytest.skip("no Python 2.7 on this machine (~/.pyenv/versions/2.7.18, python2.7, python2)")
    ports = ["--port", "0"] * len(tutorial_ports)
    with Server("menu", *ports) as srv:
        redirect: Dict[int, int] = {}
        for tutorial_port, address in zip(tutorial_ports, srv.addresses):
            redirect[tutorial_port] = int(address.rsplit(":", 1)[1])
        for tutorial_port in tutorial_ports:
            script = tmp_path / f"client_{tutorial_port}.py"
            script.write_text(TUTORIAL_CLIENT_PY2.format(port=tutorial_port))
            runner = f"{PY2_REDIRECT}exec(compile(open({str(script)!r}).read(), {str(script)!r}, 'exec'))"
            proc = subprocess.run([py2, "-c", runner] + [f"{k}={v}" for k, v in redirect.items()],
                                  input=TYPED.encode(), capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr.decode(errors="replace")
            check_session(proc.stdout.decode("utf-8"))


@pytest.fixture(scope="module")
def server():
    with Server("menu", "--quiet", "0.3") as srv:
        yield srv


def test_input_without_newline_is_answered_after_the_quiet_period(server):
    with session(server.address) as c:
        start = time.monotonic()
        c.sendall(b"0")
        assert recv_line(c) == AGENT
        assert 0.25 <= time.monotonic() - start < 3


def test_newline_within_the_quiet_period_makes_one_line(server):
    with session(server.address) as c:
        c.sendall(b"10")
        time.sleep(0.1)
        c.sendall(b"00\r")
        time.sleep(0.1)
        c.sendall(b"\n0\n")
        assert recv_line(c) == BALANCE
        assert recv_line(c) == AGENT  # nothing answered "10" or "00" on their own


def test_lines_then_an_unterminated_rest(server):
    with session(server.address) as c:
        start = time.monotonic()
        c.sendall(b"0\n1234\n1000")
        assert recv_line(c) == AGENT
        assert recv_line(c) == AGAIN
        assert time.monotonic() - start < 0.25  # the lines did not wait for the quiet period
        assert recv_line(c) == BALANCE


def test_unterminated_exit_hangs_up(server):
    with session(server.address) as c:
        c.sendall(b"exit")
        assert c.recv(100) == b""


def test_negative_quiet_keeps_lines_only():
    with Server("menu", "--quiet", "-1") as srv, session(srv.address) as c:
        c.sendall(b"0")
        c.settimeout(1.0)
        with pytest.raises(socket.timeout):  # on 3.9 not yet a TimeoutError
            c.recv(100)
        c.settimeout(10)
        c.sendall(b"\n")
        assert recv_line(c) == AGENT
