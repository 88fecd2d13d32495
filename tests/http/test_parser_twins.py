"""The compiled request parser against httptools, byte for byte.

``fastmux.http._parser_c.HttpRequestParser`` drives the same llhttp as
httptools.  Fed the same bytes split the same way, ``feed_data`` must make
the same callbacks with the same arguments, answer the same queries inside
them and raise the same errors.  ``feed_hello`` must do exactly that too,
except that each hello-world request it may answer (see the module doc of
``_parser_c``) becomes one write of the matching reply and no callbacks.
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Tuple

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmux._impl import implementations

pytestmark = pytest.mark.skipif(
    "c" not in implementations("fastmux.http._parser_c"), reason="the compiled parser is not built (fallback build)"
)

SETTINGS = settings(
    max_examples=int(os.environ.get("FASTMUX_HYPOTHESIS_EXAMPLES", "150")) * 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
REPLIES = (b"<hello GET>", b"<hello HEAD>")

Event = Tuple[Any, ...]


class Recorder:
    """Every httptools callback, with the parser's answers at message end."""

    def __init__(self, events: List[Event]) -> None:
        self.events = events
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.events.append(("begin",))

    def on_url(self, url: bytes) -> None:
        self.events.append(("url", url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.events.append(("header", name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(("headers_complete", p.get_method(), p.get_http_version(), p.should_upgrade()))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_chunk_header(self) -> None:
        self.events.append(("chunk_header",))

    def on_chunk_complete(self) -> None:
        self.events.append(("chunk_complete",))

    def on_message_complete(self) -> None:
        p = self.parser
        self.events.append(("complete", p.get_method(), p.get_http_version(), p.should_keep_alive()))


def run(make: Callable[[Any], Any], chunks: List[bytes], hello: bool = False, max_headers: int = 100,
        protocol_cls: type = Recorder) -> List[Event]:
    """Feed ``chunks`` to a fresh parser; the events, writes and errors, in order."""
    events: List[Event] = []
    proto = protocol_cls(events)
    parser = proto.parser = make(proto)
    if hello:
        parser.set_hello(lambda reply: events.append(("write", reply)), max_headers)
    for chunk in chunks:
        events.append(("feed",))
        try:
            if hello:
                returned = parser.feed_hello(chunk, REPLIES)
                if returned is not None:  # what feed_data raises, feed_hello returns
                    raise returned
            else:
                parser.feed_data(chunk)
        except httptools.HttpParserUpgrade as exc:
            events.append(("upgrade", exc.args[0]))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            events.append(("error", type(exc).__name__, str(exc), type(cause).__name__ if cause else None))
            break
    return events


def compiled(proto: Any) -> Any:
    from fastmux.http._parser_c import HttpRequestParser

    return HttpRequestParser(proto)


# -- what feed_hello should make of feed_data's events --------------------------


def _answerable(msg: List[Event], max_headers: int) -> bool:
    """The rules of _parser_c._answerable, read off feed_data's events."""
    from fastmux.http._parser_c import MAX_HELD_HEADERS

    done = msg[-1]
    headers = [(n.lower(), v) for kind, *rest in msg if kind == "header" for n, v in [rest]]
    urls = [e[1] for e in msg if e[0] == "url"]
    for name, value in headers:
        if name in (b"transfer-encoding", b"upgrade"):
            return False
        if name == b"content-length" and int(value.strip()) != 0:
            return False
    return (
        done[1] in (b"GET", b"HEAD") and done[2] in ("1.0", "1.1") and done[3]
        and urls == [b"/"] and len(headers) <= min(max_headers, MAX_HELD_HEADERS)
        and not any(e[0] in ("body", "chunk_header") for e in msg)
    )


def expected_hello_events(events: List[Event], max_headers: int) -> List[Event]:
    out: List[Event] = []
    held: Optional[List[Event]] = None  # the message being held, if any
    in_message = hello_on = False
    for ev in events:
        kind = ev[0]
        if kind in ("feed", "error", "upgrade"):
            if held is not None:  # incomplete at the end of its read: released there
                out += held
                held = None
            if kind == "feed":
                hello_on = not in_message
            out.append(ev)
        elif kind == "begin":
            in_message = True
            if hello_on:
                held = [ev]
            else:
                out.append(ev)
        elif held is not None:
            held.append(ev)
            if kind == "complete":
                in_message = False
                if _answerable(held, max_headers):
                    out.append(("write", REPLIES[held[-1][1] == b"HEAD"]))
                else:
                    out += held
                    hello_on = False  # released: the rest of the read makes callbacks
                held = None
        else:
            if kind == "complete":
                in_message = False
            out.append(ev)
    if held is not None:
        out += held
    return out


# -- inputs ----------------------------------------------------------------------

HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(40)) + b"\r\n",
    b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nEmpty:\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
    b"BREW / HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00",
    b"GET / HTTP/1.1\nHost: a\n\n",
]

streams = st.lists(st.sampled_from(HEADS), min_size=1, max_size=8).map(b"".join)
mutated = st.tuples(streams, st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=3)), max_size=3))


def mutate(data: bytes, edits: List[Tuple[int, bytes]]) -> bytes:
    for pos, new in edits:
        pos %= len(data) + 1
        data = data[:pos] + new + data[pos + 1:]
    return data


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)]) if b > a] or [b""]


cuts = st.lists(st.integers(0, 2000), max_size=12)


# -- the properties ----------------------------------------------------------------


@SETTINGS
@given(case=mutated, cuts=cuts)
def test_feed_data_is_httptools(case, cuts):
    chunks = split(mutate(*case), cuts)
    assert run(compiled, chunks) == run(httptools.HttpRequestParser, chunks)


@SETTINGS
@given(case=mutated, cuts=cuts, max_headers=st.sampled_from([100, 3]))
def test_feed_hello_is_feed_data_with_hello_answered(case, cuts, max_headers):
    chunks = split(mutate(*case), cuts)
    reference = run(httptools.HttpRequestParser, chunks)
    got = run(compiled, chunks, hello=True, max_headers=max_headers)
    assert got == expected_hello_events(reference, max_headers)


class MinimalRecorder(Recorder):
    """Only the callbacks fastmux's protocol defines: httptools then installs
    no llhttp callback for the others, and neither may the twin make them."""

    on_message_begin = on_headers_complete = on_chunk_header = on_chunk_complete = None  # type: ignore[assignment]


@SETTINGS
@given(case=mutated, cuts=cuts)
def test_feed_data_with_fewer_callbacks_is_httptools(case, cuts):
    chunks = split(mutate(*case), cuts)
    ours = run(compiled, chunks, protocol_cls=MinimalRecorder)
    assert ours == run(httptools.HttpRequestParser, chunks, protocol_cls=MinimalRecorder)


# -- examples worth keeping in plain sight ------------------------------------------


def test_pipelined_hello_is_answered_without_callbacks():
    got = run(compiled, [HEADS[0] + HEADS[1] + HEADS[0]], hello=True)
    assert got == [("feed",), ("write", REPLIES[0]), ("write", REPLIES[1]), ("write", REPLIES[0])]


def test_a_miss_releases_its_callbacks_and_the_rest_of_the_read():
    got = run(compiled, [HEADS[7] + HEADS[0]], hello=True)
    assert got == run(httptools.HttpRequestParser, [HEADS[7] + HEADS[0]])
    assert not any(e[0] == "write" for e in got)


def test_request_split_over_reads_is_delivered_by_callbacks():
    got = run(compiled, [HEADS[0][:10], HEADS[0][10:] + HEADS[0]], hello=True)
    reference = run(httptools.HttpRequestParser, [HEADS[0][:10], HEADS[0][10:] + HEADS[0]])
    assert got == reference  # the second request comes after a carried-over one in its read
    got = run(compiled, [HEADS[0][:10], HEADS[0][10:], HEADS[0]], hello=True)
    assert got[-1] == ("write", REPLIES[0])


class Raising(Recorder):
    def on_header(self, name: bytes, value: bytes) -> None:
        raise ValueError(name)


@pytest.mark.parametrize("hello", [False, True])
def test_callback_errors_match_httptools(hello):
    chunks = [b"GET /x HTTP/1.1\r\nA: 1\r\n\r\n"]
    got = run(compiled, chunks, hello=hello, protocol_cls=Raising)
    assert got == run(httptools.HttpRequestParser, chunks, protocol_cls=Raising)
    assert got[-1][0::3] == ("error", "ValueError") and got[-1][1] == "HttpParserCallbackError"


def test_callback_error_when_held_callbacks_are_made_at_the_end_of_a_read():
    # Held until the read ends, the callbacks run outside llhttp; the error
    # still surfaces as httptools' callback error, and the parser stays failed.
    events: List[Event] = []
    parser = compiled(Raising(events))
    parser.set_hello(events.append, 100)
    returned = parser.feed_hello(b"GET / HTTP/1.1\r\nA: 1\r\nB", REPLIES)
    assert isinstance(returned, httptools.HttpParserCallbackError)
    assert isinstance(returned.__context__, ValueError)
    with pytest.raises(httptools.HttpParserCallbackError):
        parser.feed_data(b": 2\r\n\r\n")


def test_write_error_is_a_callback_error():
    def write(reply: bytes) -> None:
        raise OSError("gone")

    parser = compiled(Recorder([]))
    parser.set_hello(write, 100)
    returned = parser.feed_hello(HEADS[0], REPLIES)
    assert isinstance(returned, httptools.HttpParserCallbackError)
    assert isinstance(returned.__context__, OSError)


def test_reply_lookup_error_is_a_callback_error():
    parser = compiled(Recorder([]))
    parser.set_hello(lambda reply: None, 100)
    returned = parser.feed_hello(HEADS[1], (b"a GET reply only",))  # HEAD wants replies[1]
    assert isinstance(returned, httptools.HttpParserCallbackError)
    assert isinstance(returned.__context__, IndexError)


def test_feed_hello_returns_none_or_the_error_and_never_raises_it():
    events: List[Event] = []
    proto = Recorder(events)
    parser = proto.parser = compiled(proto)
    parser.set_hello(events.append, 100)
    assert parser.feed_hello(HEADS[0], REPLIES) is None and parser.answered == 1
    head = b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
    upgrade = parser.feed_hello(head + b"rest", REPLIES)
    assert isinstance(upgrade, httptools.HttpParserUpgrade) and upgrade.args == (len(head),)
    proto = Recorder([])
    bad = proto.parser = compiled(proto)
    bad.set_hello(events.append, 100)
    error = bad.feed_hello(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", REPLIES)
    assert isinstance(error, httptools.HttpParserError) and bad.answered == 0


def test_feed_hello_needs_set_hello():
    with pytest.raises(RuntimeError):
        compiled(Recorder([])).feed_hello(HEADS[0], REPLIES)


def test_memoryview_and_bytearray_input():
    for data in (bytearray(HEADS[0]), memoryview(HEADS[0])):
        assert run(compiled, [data]) == run(httptools.HttpRequestParser, [bytes(data)])
