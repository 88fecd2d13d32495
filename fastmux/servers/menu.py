"""``fastmux serve menu``: the tutorial's phone-menu bot ("10086").

On connect the bot sends the welcome line; each line it receives is looked
up in the menu: ``0`` reaches a human agent, ``exit`` hangs up, a known
``1xxx`` code answers its text, anything else answers ``请重新输入.``.

Unlike the tutorial, which compared each ``recv(1024)`` with ``'exit'``
(two inputs arriving in one packet, or one split over two, were misread),
input is framed in lines: ``\\n`` ends a line, a ``\\r`` before it is dropped,
surrounding blanks are ignored, the text must be UTF-8.  The tutorial's own
client sends what was typed with no newline and waits for the answer, so
input followed by ``--quiet`` seconds of silence (default 0.3, as the upload
server waits for the tutorial's header) counts as a line too; bytes that a
newline follows within that time are framed as lines, pipelining included.
A line longer than ``--max-line`` bytes or a client silent for
``--idle-timeout`` seconds is answered with a message and disconnected.

The menu is data (``Menu``): ``--menu FILE`` extends or replaces it from
JSON, e.g.::

    {"entries": {"1888": "积分兑换:请回复积分数量.",
                 "1999": {"call": "mypkg.billing:lookup", "pool": "process"},
                 "1003": null},
     "welcome": "...", "fallback": "...", "exit": ["exit", "quit"],
     "messages": {"too_long": "...", "idle": "...", "bad_encoding": "...", "shutdown": "..."},
     "replace": false}

An entry is a reply text, ``null`` (remove a default entry), or
``{"call": "module:function", "pool": "thread"|"process"}``: the function
gets the code and returns the reply text; it runs off the loop (threads for
blocking work, processes for CPU-heavy work) and its reply comes back on the
loop, in order: lines after it wait, and reading pauses meanwhile.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Union

from .._callables import load_callable
from .context import ServeContext
from .quiet import QUIET, QuietTimer

DEFAULT_PORT = 8888
TRANSPORT = "stream"

log = logging.getLogger("fastmux.servers")


class MenuError(ValueError):
    """A menu file that cannot be used."""


@dataclass(frozen=True)
class Action:
    """A menu entry answered by calling ``module:function(code) -> str`` off the loop."""

    call: str
    pool: str = "thread"

    def resolve(self) -> Callable[[str], str]:
        return load_callable(self.call, "call")


Entry = Union[str, Action]


def monthly_bill(code: str) -> str:
    """Demo of a CPU-heavy entry (run in the process pool): a made-up bill."""
    digest = code.encode()
    for _ in range(20000):
        digest = hashlib.sha256(digest).digest()
    cents = int.from_bytes(digest[:3], "big") % 20000
    return f"本月账单:{cents // 100}.{cents % 100:02d} 元."


def queue_position(code: str) -> str:
    """Demo of a blocking entry (run in the thread pool): asks a slow 'back end'."""
    time.sleep(0.05)
    return f"人工服务排队中,您前面还有 {int(time.time()) % 7 + 1} 位."


@dataclass(frozen=True)
class Menu:
    welcome: str = "欢迎致电 10086,请输入1xxx,0转人工服务."
    entries: Mapping[str, Entry] = field(default_factory=lambda: {
        "0": "通过可能会被录音.balabala一大推",
        "1000": "话费余额查询:余额将以短信方式发送到您的手机.",
        "1001": "流量查询:剩余流量将以短信方式发送到您的手机.",
        "1002": Action("fastmux.servers.menu:monthly_bill", "process"),
        "1003": "套餐办理:请回复套餐编号,或访问网上营业厅.",
        "1004": Action("fastmux.servers.menu:queue_position", "thread"),
    })
    fallback: str = "请重新输入."
    exit_words: FrozenSet[str] = frozenset({"exit"})
    too_long: str = "输入过长,再见."
    idle: str = "长时间未操作,再见."
    bad_encoding: str = "请使用 UTF-8 编码输入."
    shutdown: str = "系统维护,再见."

    def extended(self, data: Mapping[str, Any], where: str = "menu") -> "Menu":
        """A copy with a parsed JSON document applied (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise MenuError(f"{where}: expected a JSON object")
        known = {"welcome", "fallback", "entries", "exit", "messages", "replace"}
        unknown = set(data) - known
        if unknown:
            raise MenuError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
        changes: Dict[str, Any] = {}
        for key in ("welcome", "fallback"):
            if key in data:
                changes[key] = _text(data[key], f"{where}: {key}")
        entries: Dict[str, Entry] = {} if data.get("replace") else dict(self.entries)
        raw = data.get("entries", {})
        if not isinstance(raw, Mapping):
            raise MenuError(f"{where}: entries must be an object")
        for code, value in raw.items():
            if not code or code != code.strip() or len(code.encode()) > 64:
                raise MenuError(f"{where}: entry code {code!r} must be 1-64 bytes, no surrounding blanks")
            if value is None:
                entries.pop(code, None)
            elif isinstance(value, str):
                entries[code] = _text(value, f"{where}: entries[{code!r}]")
            elif isinstance(value, Mapping) and isinstance(value.get("call"), str):
                pool = value.get("pool", "thread")
                if pool not in ("thread", "process") or set(value) - {"call", "pool"}:
                    raise MenuError(f"{where}: entries[{code!r}]: expected {{'call': 'module:function', "
                                    f"'pool': 'thread'|'process'}}")
                action = Action(value["call"], pool)
                try:
                    action.resolve()
                except (ImportError, AttributeError, ValueError, TypeError) as exc:
                    raise MenuError(f"{where}: entries[{code!r}]: cannot load {action.call}: {exc}") from exc
                entries[code] = action
            else:
                raise MenuError(f"{where}: entries[{code!r}] must be a text, null or {{'call': ...}}")
        changes["entries"] = entries
        if "exit" in data:
            words = data["exit"]
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
                raise MenuError(f"{where}: exit must be a non-empty list of words")
            changes["exit_words"] = frozenset(words)
        messages = data.get("messages", {})
        if not isinstance(messages, Mapping) or set(messages) - {"too_long", "idle", "bad_encoding", "shutdown"}:
            raise MenuError(f"{where}: messages may set too_long, idle, bad_encoding, shutdown")
        for key, value in messages.items():
            changes[key] = _text(value, f"{where}: messages.{key}")
        return replace(self, **changes)

    @classmethod
    def from_file(cls, path: str) -> "Menu":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise MenuError(f"{path}: {exc}") from exc
        return cls().extended(data, path)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        raise MenuError(f"{where}: must be a one-line text")
    return value


class _Compiled:
    """A menu with its replies encoded once, shared by all connections."""

    def __init__(self, menu: Menu, max_line: int, idle_timeout: float, quiet: float = QUIET) -> None:
        enc = lambda text: (text + "\n").encode("utf-8")  # noqa: E731
        self.welcome = enc(menu.welcome)
        self.fallback = enc(menu.fallback)
        self.exit_words = menu.exit_words
        self.too_long = enc(menu.too_long)
        self.idle = enc(menu.idle)
        self.bad_encoding = enc(menu.bad_encoding)
        self.shutdown = enc(menu.shutdown)
        self.replies: Dict[str, Union[bytes, Action]] = {
            code: enc(value) if isinstance(value, str) else value for code, value in menu.entries.items()
        }
        self.calls: Dict[Action, Callable[[str], str]] = {
            value: value.resolve() for value in menu.entries.values() if isinstance(value, Action)
        }
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.quiet = quiet


class MenuProtocol:
    def __init__(self, menu: _Compiled, ctx: ServeContext) -> None:
        self._menu = menu
        self._ctx = ctx
        self.transport: Any = None
        self._buf = b""
        self._waiting = False  # a {"call": ...} entry is running off the loop
        self._write_paused = False  # the client is not reading its replies
        self._closing = False
        self._last = 0.0
        self._timer: Any = None
        self._quiet = QuietTimer(ctx.runtime, menu.quiet, self._last_data, self._quiet_elapsed)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._ctx.conns.add(self)
        if self._closing:  # shut down while connecting (see Connections.add)
            return
        transport.write(self._menu.welcome)
        self._last = self._ctx.runtime.time()
        if self._menu.idle_timeout > 0:
            self._timer = self._ctx.runtime.call_later(self._menu.idle_timeout, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self._last = self._ctx.runtime.time()
        self._buf += data
        if not self._waiting:
            self._process()

    def _process(self) -> None:
        menu = self._menu
        buf = self._buf
        out: List[bytes] = []
        start = 0
        while not self._closing:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            raw = buf[start:end]
            start = end + 1
            if len(raw) > menu.max_line:
                return self._drop(out, menu.too_long, "line too long")
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                out.append(menu.bad_encoding)
                continue
            reply = menu.replies.get(line)
            if reply is None:
                if line in menu.exit_words:
                    self._buf = b""
                    self._close(out)
                    return
                out.append(menu.fallback)
            elif reply.__class__ is bytes:
                out.append(reply)
            else:  # an Action: answer off the loop, keep the rest for later
                self._buf = buf[start:]
                self._flush(out)
                self._call(reply, line)
                return
        rest = buf[start:] if start else buf
        if len(rest) > menu.max_line:
            return self._drop(out, menu.too_long, "line too long")
        self._buf = rest
        self._flush(out)
        if rest:
            self._quiet.arm()
        else:
            self._quiet.cancel()

    def _last_data(self) -> float:
        return self._last

    def _quiet_elapsed(self) -> None:
        # Silence after an unterminated line ends it: the client sent a
        # message without newline and waits for the answer.
        if self.transport is None or self._closing or self._waiting or not self._buf:
            return  # gone, or _called() processes the rest (and re-arms)
        self._buf += b"\n"
        self._process()

    def _flush(self, out: List[bytes]) -> None:
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _call(self, action: Action, code: str) -> None:
        self._waiting = True
        self.transport.pause_reading()
        self._ctx.offload(action.pool, self._menu.calls[action], code, done=self._called)

    def _called(self, fut: Any) -> None:
        self._waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        try:
            reply = str(fut.result()).replace("\n", " ")
        except Exception as exc:  # the user's function failed: say so, keep the line
            log.warning("menu: entry failed: %r", exc)
            reply = self._menu.fallback.decode().rstrip("\n")
        self.transport.write((reply + "\n").encode("utf-8"))
        self._last = self._ctx.runtime.time()
        if self._closing:
            self.transport.write(self._menu.shutdown)
            self.transport.close()
            return
        if not self._write_paused:
            self.transport.resume_reading()
        self._process()

    def _drop(self, out: List[bytes], message: bytes, why: str) -> None:
        log.info("menu: %s from %s: disconnecting", why, self.transport.get_extra_info("peername"))
        out.append(message)
        self._buf = b""
        self._close(out)

    def _close(self, out: List[bytes]) -> None:
        self._closing = True
        self._flush(out)
        self.transport.close()

    def _idle_check(self) -> None:
        self._timer = None
        if self.transport is None or self._closing:
            return
        remaining = self._last + self._menu.idle_timeout - self._ctx.runtime.time()
        if remaining > 0 or self._waiting:
            self._timer = self._ctx.runtime.call_later(max(remaining, 0.05), self._idle_check)
            return
        self._drop([], self._menu.idle, "idle")

    def eof_received(self) -> bool:
        return False

    # Flow control: a client that sends lines but never reads the replies
    # would grow the write buffer without bound; stop reading its lines
    # until it reads (as the echo server does).
    def pause_writing(self) -> None:
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self._waiting:
            self.transport.resume_reading()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._ctx.conns.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._quiet.cancel()
        self.transport = None

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.transport is None or self._waiting:
            return  # _called finishes the answer, then says goodbye
        self.transport.write(self._menu.shutdown)
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--menu", metavar="FILE", help="JSON file that extends (or with \"replace\": true, "
                        "replaces) the built-in menu")
    parser.add_argument("--max-line", type=int, default=1024, metavar="BYTES",
                        help="longest accepted input line (default: %(default)s)")
    parser.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="disconnect a silent client after this long; 0 = never (default: %(default)s)")
    parser.add_argument("--quiet", type=float, default=QUIET, metavar="SECONDS",
                        help="input without newline (the tutorial's client) counts as a line after this "
                             "much silence; negative = lines only (default: %(default)s)")


def load_menu(args: argparse.Namespace) -> Menu:
    return Menu.from_file(args.menu) if args.menu else Menu()


def check_options(args: argparse.Namespace) -> None:
    load_menu(args)
    if args.max_line < 1:
        raise ValueError("--max-line must be at least 1")


def make_protocol_factory(args: argparse.Namespace, reactor: Any, ctx: ServeContext) -> Callable[[], Any]:
    compiled = _Compiled(load_menu(args), args.max_line, args.idle_timeout, args.quiet)
    return lambda: MenuProtocol(compiled, ctx)
