"""``fastmux serve udp-echo``: every datagram goes back to its sender.

The tutorial's UDP receiver only printed what it got; this one answers, so
``fastmux client udp HOST:PORT`` (the tutorial's sender, interactive) can
show the round trip.  UDP has no connections: graceful shutdown just closes
the endpoint.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

from .context import ServeContext

DEFAULT_PORT = 9999
TRANSPORT = "datagram"

log = logging.getLogger("fastmux.servers")


class UdpEchoProtocol:
    def __init__(self) -> None:
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.datagram_received = transport.sendto  # sendto(data, addr): straight back

    def datagram_received(self, data: bytes, addr: Any) -> None:  # for loops that cache the class's method
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable for a sender that went away: not fatal.
        log.debug("udp-echo: %s", exc)

    def connection_lost(self, exc: Any) -> None:
        self.__dict__.pop("datagram_received", None)
        self.transport = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def make_protocol_factory(args: argparse.Namespace, reactor: Any, ctx: ServeContext) -> Callable[[], Any]:
    return UdpEchoProtocol
