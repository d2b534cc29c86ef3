"""Redis pub/sub backend of the gateway's broker: one connection, RESP parsed by hiredis.

A pub/sub connection can die quietly (a failover, CLIENT KILL, an output-buffer limit, a
network that stops answering): the failure reported most against other chat servers is a
listener that stops hearing while its health check stays green. Here the connection is
watched: an EOF or error ends it at once, and silence is probed with PING (allowed while
subscribed); no answer within the interval counts as dead. The broker then reconnects with
backoff, subscribes every channel again, and reports :class:`Resubscribed` so the gateway can
tell its clients to sync. ``subscribed`` is false meanwhile (readiness)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

from gateway.broker import Delivery, Resubscribed

log = logging.getLogger(__name__)

# Silence longer than this gets a PING; no answer in as long again means the link is dead.
PROBE_SECONDS = 2.0
# Channels per SUBSCRIBE command when resubscribing many users at once.
SUBSCRIBE_CHUNK = 1000


def pack(*parts: str | bytes) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisBroker:
    def __init__(self, url: str) -> None:
        options: dict[str, Any] = dict(parse_url(url))
        self._host = str(options.get("host", "127.0.0.1"))
        self._port = int(options.get("port", 6379))
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._channels: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()
        self._ready: deque[Delivery] = deque()
        self._probing = False
        self._up = False

    @property
    def subscribed(self) -> bool:
        return self._up

    async def connect(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), 5)
        self._reader, self._writer, self._parser = reader, writer, hiredis.Reader()
        self._probing = False
        if self._password is not None:
            auth = ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)
            writer.write(pack(*auth))
        channels = sorted(self._channels)
        for start in range(0, len(channels), SUBSCRIBE_CHUNK):
            writer.write(pack("SUBSCRIBE", *channels[start:start + SUBSCRIBE_CHUNK]))
        # Subscribed only once Redis says so: a PING behind the SUBSCRIBEs comes back after
        # them, and a link that accepts bytes but delivers none never gets that far.
        writer.write(pack("PING", "ready"))
        await writer.drain()
        try:
            await asyncio.wait_for(self._until_pong(reader, b"ready"), PROBE_SECONDS)
        except BaseException:
            self._close()
            raise
        self._up = True

    async def _until_pong(self, reader: asyncio.StreamReader, token: bytes) -> None:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                raise EOFError("connection closed by the server")
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                if isinstance(reply, list) and reply[:2] == [b"pong", token]:
                    # Whatever came in the same read after the pong is kept too.
                    while (rest := self._parser.gets()) is not False:
                        self._take(rest)
                    return
                self._take(reply)

    async def disconnect(self) -> None:
        self._up = False
        self._close()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        self._send("SUBSCRIBE", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        self._send("UNSUBSCRIBE", channel)

    async def next_message(self) -> Delivery | Resubscribed:
        while not self._ready:
            try:
                await self._read()
            except (OSError, EOFError, asyncio.IncompleteReadError, hiredis.ProtocolError) as exc:
                return await self._reconnect(f"{type(exc).__name__}: {exc}")
        return self._ready.popleft()

    def _send(self, *command: str) -> None:
        # While reconnecting the channel set is replayed on connect; nothing to send now.
        if self._up and self._writer is not None and not self._writer.is_closing():
            self._writer.write(pack(*command))

    async def _read(self) -> None:
        if self._reader is None or not self._up:
            raise EOFError("not connected")
        try:
            data = await asyncio.wait_for(self._reader.read(1 << 16), PROBE_SECONDS)
        except TimeoutError:
            if self._probing:
                raise EOFError(f"no answer to PING in {PROBE_SECONDS:g} s") from None
            self._probing = True
            self._send("PING")
            return
        if not data:
            raise EOFError("connection closed by the server")
        self._probing = False
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            self._take(reply)

    def _take(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise EOFError(f"server error on the pub/sub connection: {reply}")
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            self._ready.append(Delivery(reply[1].decode(), reply[2]))
        # subscribe/unsubscribe confirmations and PING's pong need nothing.

    def _close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def _reconnect(self, reason: str) -> Resubscribed:
        self._up = False
        self._close()
        log.warning("pub/sub connection lost (%s); resubscribing", reason)
        delay = 0.05
        while True:
            try:
                await self.connect()
            except (OSError, TimeoutError, EOFError, hiredis.ProtocolError) as exc:
                log.warning("pub/sub reconnect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            log.info("pub/sub resubscribed to %d channels", len(self._channels))
            return Resubscribed(reason)
