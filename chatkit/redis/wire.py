"""One connection of a command link, as an asyncio protocol: commands queued in a loop turn go
out in one write at its end, and each reply resolves the oldest waiting future (Redis answers
in order). What to do when it is lost is the link's business (chatkit/redis/link.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Any, cast

from chatkit.redis import resp
from chatkit.redis.address import RedisAddress
from chatkit.redis.errors import ConnectionLost, ReplyError

log = logging.getLogger(__name__)


class Wire(asyncio.Protocol):
    """One connection: writes go out once per loop turn, replies resolve futures in order."""

    def __init__(self, address: RedisAddress) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.reader = resp.reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.lost = False
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A peer that vanished without a word is found out by the kernel in the end.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def send(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        self.outgoing.append(packed)
        self.waiting.append(future)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def send_all(self, packed: bytes, futures: list[asyncio.Future[Any]]) -> None:
        """Several commands packed together, one future each: nothing can come between them."""
        self.outgoing.append(packed)
        self.waiting.extend(futures)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.outgoing and not self.lost:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                log.error("a Redis reply arrived that no command was waiting for: %r", reply)
                continue
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.gone.done():
            self.gone.set_result(None)
        error = ConnectionLost(f"Redis connection to {self.address} lost: {exc or 'closed by the server'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
