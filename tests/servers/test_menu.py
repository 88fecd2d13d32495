"""``fastmux serve menu`` end to end: the 10086 bot, its bad inputs, its menu file."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from support.net import connect, nc_command, recv_line, recv_until_closed
from support.server import LOOP, ROOT, Server, child_env, fastmux_cmd

WELCOME = "欢迎致电 10086,请输入1xxx,0转人工服务.\n".encode()
AGENT = "通过可能会被录音.balabala一大推\n".encode()
AGAIN = "请重新输入.\n".encode()

# The tutorial's menu client, ported to Python 3 and ending each input with
# "\n": a line-framed client is answered at once, without the quiet period
# (test_menu_tutorial.py runs the client as the tutorial wrote it).
TUTORIAL_MENU_CLIENT = r'''
import socket
import sys

ip_port = ('127.0.0.1', int(sys.argv[1]))
sk = socket.socket()
sk.connect(ip_port)
sk.settimeout(5)
while True:
    data = sk.recv(1024)
    print('receive: ', data.decode())
    inp = input('please input: ')
    sk.sendall((inp + '\n').encode())
    if inp == 'exit':
        break
sk.close()
'''


@pytest.fixture(scope="module")
def server():
    with Server("menu", "--max-line", "64", "--idle-timeout", "1") as srv:
        yield srv


def session(address):
    c = connect(address)
    assert recv_line(c) == WELCOME
    return c


def test_welcome_agent_codes_and_fallback(server):
    with session(server.address) as c:
        c.sendall(b"0\n")
        assert recv_line(c) == AGENT
        c.sendall(b"1000\n")
        assert recv_line(c).decode().startswith("话费余额查询")
        c.sendall(b"hello\n")
        assert recv_line(c) == AGAIN
        c.sendall(b"exit\n")
        assert recv_until_closed(c) == b""


def test_crlf_blanks_and_pipelined_lines(server):
    with session(server.address) as c:
        c.sendall(b"0\r\n  0  \n\n9999\r\n0")  # the last line is incomplete
        assert [recv_line(c) for _ in range(4)] == [AGENT, AGENT, AGAIN, AGAIN]
        c.sendall(b"\nexit\r\n")
        assert recv_line(c) == AGENT
        assert recv_until_closed(c) == b""


def test_line_split_across_packets(server):
    with session(server.address) as c:
        for piece in (b"1", b"0", b"0", b"3", b"\n"):
            c.sendall(piece)
            time.sleep(0.02)
        assert recv_line(c).decode().startswith("套餐办理")


def test_over_long_line_is_dropped_with_a_message(server):
    with session(server.address) as c:
        c.sendall(b"0" * 65 + b"\n")
        assert recv_line(c).decode() == "输入过长,再见.\n"
        assert recv_until_closed(c) == b""


def test_over_long_line_without_newline_is_dropped(server):
    with session(server.address) as c:
        c.sendall(b"x" * 200)
        assert recv_line(c).decode() == "输入过长,再见.\n"
        assert recv_until_closed(c) == b""


def test_invalid_utf8_gets_a_message_and_the_session_goes_on(server):
    with session(server.address) as c:
        c.sendall(b"\xff\xfe\xfd\n")
        assert recv_line(c).decode() == "请使用 UTF-8 编码输入.\n"
        c.sendall(b"0\n")
        assert recv_line(c) == AGENT


def test_utf8_input(server):
    with session(server.address) as c:
        c.sendall("人工\n".encode())
        assert recv_line(c) == AGAIN


def test_idle_client_is_dropped_with_a_message(server):
    with session(server.address) as c:
        t0 = time.monotonic()
        assert recv_line(c).decode() == "长时间未操作,再见.\n"  # --idle-timeout 1
        assert recv_until_closed(c) == b""
        assert 0.8 < time.monotonic() - t0 < 6


def test_activity_keeps_a_client(server):
    with session(server.address) as c:
        for _ in range(4):
            time.sleep(0.4)
            c.sendall(b"0\n")
            assert recv_line(c) == AGENT


def test_offloaded_entries_answer_in_order(server):
    # 1002 runs in the process pool (CPU-heavy demo), 1004 in the thread pool.
    with session(server.address) as c:
        c.sendall(b"1002\n0\n1004\n0\n")
        lines = [recv_line(c).decode() for _ in range(4)]
        assert lines[0].startswith("本月账单:") and lines[0].endswith("元.\n")
        assert lines[1] == AGENT.decode()
        assert lines[2].startswith("人工服务排队中")
        assert lines[3] == AGENT.decode()


def test_many_clients_at_once(server):
    clients = [session(server.address) for _ in range(50)]
    try:
        for c in clients:
            c.sendall(b"0\n")
        for c in clients:
            assert recv_line(c) == AGENT
    finally:
        for c in clients:
            c.close()


def test_tutorial_client(server, tmp_path):
    script = tmp_path / "tutorial_menu_client.py"
    script.write_text(TUTORIAL_MENU_CLIENT)
    proc = subprocess.run([sys.executable, str(script), str(server.port)], input="0\n1234\nexit\n",
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "欢迎致电 10086" in out and "通过可能会被录音" in out and "请重新输入." in out


def test_nc(server):
    proc = subprocess.run(nc_command("127.0.0.1", server.port), input=b"0\nexit\n",
                          capture_output=True, timeout=20)
    assert proc.stdout == WELCOME + AGENT


def test_two_ports_in_one_process():
    # the tutorial's 8020/8021 server, with --port repeated
    with Server("menu", "--port", "0", "--port", "0") as srv:
        assert len(srv.addresses) == 2 and srv.addresses[0] != srv.addresses[1]
        for address in srv.addresses:
            with session(address) as c:
                c.sendall(b"0\n")
                assert recv_line(c) == AGENT
        assert srv.stop() == 0


def test_menu_file_extends_the_menu(tmp_path):
    menu = tmp_path / "menu.json"
    menu.write_text(json.dumps({
        "welcome": "您好,这里是测试台.",
        "entries": {"1888": "积分兑换:请回复积分数量.", "1000": None,
                    "1999": {"call": "fastmux.servers.menu:queue_position", "pool": "thread"}},
        "exit": ["exit", "bye"],
        "messages": {"shutdown": "下班了."},
    }, ensure_ascii=False), encoding="utf-8")
    with Server("menu", "--menu", str(menu)) as srv:
        with connect(srv.address) as c:
            assert recv_line(c).decode() == "您好,这里是测试台.\n"
            c.sendall(b"1888\n1000\n0\n1999\n")
            assert recv_line(c).decode() == "积分兑换:请回复积分数量.\n"
            assert recv_line(c) == AGAIN  # removed
            assert recv_line(c) == AGENT  # defaults kept
            assert recv_line(c).decode().startswith("人工服务排队中")
            srv.send_signal(15)
            assert recv_line(c).decode() == "下班了.\n"  # graceful shutdown says goodbye
            assert recv_until_closed(c) == b""
        assert srv.proc.wait(20) == 0


@pytest.mark.parametrize("content, why", [
    ("{not json", "Expecting"),
    ('{"entries": {"1": 5}}', "entries"),
    ('{"welcome": "two\\nlines"}', "one-line"),
    ('{"colour": "red"}', "unknown key"),
    ('{"entries": {"1": {"call": "no.such.module:f"}}}', "cannot load"),
])
def test_bad_menu_file_is_reported(tmp_path, content, why):
    menu = tmp_path / "menu.json"
    menu.write_text(content)
    proc = subprocess.run(fastmux_cmd("serve", "menu", "--port", "0", "--menu", str(menu), "--loop", LOOP),
                          capture_output=True, text=True, timeout=30, env=child_env(), cwd=str(ROOT))
    assert proc.returncode == 2
    assert why in proc.stderr and "listening" not in proc.stdout


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_call_entries_find_modules_in_the_current_directory(tmp_path, pool):
    """As the README's example: a package beside the menu file, the server
    started from that directory; the function gets the code, returns the reply."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "mod.py").write_text("def func(code):\n    return f'you typed {code}'\n")
    (tmp_path / "my-menu.json").write_text(
        '{"entries": {"1999": {"call": "mypkg.mod:func", "pool": "%s"}}}' % pool)
    with Server("menu", "--menu", "my-menu.json", cwd=str(tmp_path)) as srv:
        with connect(srv.address, timeout=60) as c:
            assert recv_line(c) == WELCOME
            c.sendall(b"1999\n")
            assert recv_line(c) == b"you typed 1999\n"
