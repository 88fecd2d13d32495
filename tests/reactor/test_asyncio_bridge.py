"""fastmux.asyncio: asyncio's own loop over fastmux's selectors, running real asyncio code."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap

import pytest

import fastmux.asyncio as fasyncio
import fastmux.selectors as fsel

TIMEOUT = 10.0


async def _echo_roundtrip():
    handled = asyncio.Event()

    async def handle(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        handled.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for word in (b"hello\n", b"fastmux\n"):
            writer.write(word)
            await writer.drain()
            replies.append(await asyncio.wait_for(reader.readline(), TIMEOUT))
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(handled.wait(), TIMEOUT)
    loop = asyncio.get_running_loop()
    return replies, loop, type(loop._selector)


def test_run_streams():
    replies, loop, selector_cls = fasyncio.run(_echo_roundtrip())
    assert replies == [b"HELLO\n", b"FASTMUX\n"]
    assert selector_cls is fsel.DefaultSelector
    assert loop.is_closed()


def test_new_event_loop_runs_tasks_timers_executors():
    loop = fasyncio.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert isinstance(loop._selector, fsel.DefaultSelector)

        async def main():
            await asyncio.sleep(0.001)
            r = await loop.run_in_executor(None, sum, [1, 2, 3])
            results = await asyncio.gather(*(asyncio.sleep(0.001, result=i) for i in range(10)))
            rsock, wsock = socket.socketpair()
            try:
                reader, writer = await asyncio.open_connection(sock=rsock)
                wsock.sendall(b"over a socketpair\n")
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                writer.close()
                await writer.wait_closed()
            finally:
                wsock.close()
            return r, results, line

        r, results, line = loop.run_until_complete(main())
        assert r == 6 and results == list(range(10)) and line == b"over a socketpair\n"
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def test_policy_and_install():
    policy_cls = fasyncio.EventLoopPolicy
    assert fasyncio.EventLoopPolicy is policy_cls  # made once
    loop = policy_cls().new_event_loop()
    try:
        assert isinstance(loop._selector, fsel.DefaultSelector)
    finally:
        loop.close()
    old = asyncio.get_event_loop_policy()
    try:
        fasyncio.install()
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop._selector, fsel.DefaultSelector)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(old)
    with pytest.raises(AttributeError):
        fasyncio.no_such_thing


def test_import_does_not_warn():
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import fastmux.asyncio
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(__import__("pathlib").Path(fasyncio.__file__).parents[1]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
