"""A fake gateway: talks to a request service the way a gateway does, for tests. XADD a
Request to the service's stream, then read the ConnReply on the gateway's channel and
UserEvents on users' channels.

    async with running(serve, settings), FakeGateway.open(settings.redis_url) as gateway:
        reply, frame = await gateway.call(wire.Register(...))
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import redis.asyncio

from chatkit import keys, wire
from chatkit.envelopes import ENTRY_FIELD, ConnReply, Request, UserEvent
from tests.support import layout

GATEWAY = "gw-test"

_decode_reply = msgspec.json.Decoder(ConnReply).decode
_decode_event = msgspec.json.Decoder(UserEvent).decode
_frames: msgspec.json.Decoder[wire.ServerFrame] = msgspec.json.Decoder(wire.ServerFrame)


def server_frame(raw: msgspec.Raw) -> wire.ServerFrame:
    return _frames.decode(bytes(raw))


class FakeGateway:
    def __init__(self, client: redis.asyncio.Redis, gateway: str = GATEWAY) -> None:
        self.redis = client
        self.gateway = gateway
        self.pubsub = client.pubsub()
        self._conns = itertools.count(1)
        # What arrived but was not asked for yet, by connection id and by user id.
        self._replies: dict[str, list[ConnReply]] = defaultdict(list)
        self._events: dict[int, list[UserEvent]] = defaultdict(list)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, redis_url: str, gateway: str = GATEWAY) -> AsyncIterator[FakeGateway]:
        client = redis.asyncio.Redis.from_url(redis_url)
        fake = cls(client, gateway)
        try:
            await fake.subscribe(keys.gateway_channel(gateway))
            yield fake
        finally:
            await fake.pubsub.aclose()
            await client.aclose()

    def new_conn(self) -> str:
        return f"{self.gateway}.{next(self._conns)}"

    async def subscribe(self, channel: str) -> None:
        """Subscribe, and wait until the server confirms, so nothing published after this
        returns can be missed."""
        await self.pubsub.subscribe(channel)
        deadline = asyncio.get_running_loop().time() + 5
        while (message := await self._next(deadline)) is not None:
            if _text(message["type"]) == "subscribe" and _text(message["channel"]) == channel:
                return
        raise TimeoutError(f"no confirmation of the subscription to {channel}")

    async def watch_user(self, user_id: int) -> None:
        await self.subscribe(keys.user_channel(user_id))

    async def send(
        self, frame: wire.ClientFrame, *, user: wire.UserRef | None = None, conn: str | None = None,
        stream: str = layout.AUTH_REQUESTS[0],
    ) -> str:
        """Queue a request like a gateway would; returns the connection id it came from."""
        conn = conn or self.new_conn()
        request = Request(gateway=self.gateway, conn=conn, user=user, frame=frame)
        await self.redis.xadd(stream, {ENTRY_FIELD: msgspec.json.encode(request)})
        return conn

    async def reply(self, conn: str, *, timeout: float = 10.0) -> ConnReply:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._replies[conn]:
            if await self._next(deadline) is None:
                raise TimeoutError(f"no reply for connection {conn} within {timeout}s")
        return self._replies[conn].pop(0)

    async def call(
        self, frame: wire.ClientFrame, *, user: wire.UserRef | None = None, conn: str | None = None,
        stream: str = layout.AUTH_REQUESTS[0], timeout: float = 10.0,
    ) -> tuple[ConnReply, wire.ServerFrame]:
        """Send a request and wait for its reply: the envelope, and the frame in it decoded."""
        conn = await self.send(frame, user=user, conn=conn, stream=stream)
        reply = await self.reply(conn, timeout=timeout)
        return reply, server_frame(reply.frame)

    async def user_event(self, user_id: int, *, timeout: float = 10.0) -> UserEvent:
        """The next event on a user's channel (call :meth:`watch_user` before it is sent)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._events[user_id]:
            if await self._next(deadline) is None:
                raise TimeoutError(f"no event for user {user_id} within {timeout}s")
        return self._events[user_id].pop(0)

    async def _next(self, deadline: float) -> dict[str, Any] | None:
        """Read one pub/sub message and file it; None once the deadline has passed."""
        loop = asyncio.get_running_loop()
        while (left := deadline - loop.time()) > 0:
            message: dict[str, Any] | None = await self.pubsub.get_message(timeout=min(left, 0.5))
            if message is not None:
                self._file(message)
                return message
        return None

    def _file(self, message: dict[str, Any]) -> None:
        if _text(message["type"]) != "message":
            return
        channel = _text(message["channel"])
        if channel == keys.gateway_channel(self.gateway):
            reply = _decode_reply(message["data"])
            self._replies[reply.conn].append(reply)
        elif channel.startswith(keys.USER_CHANNEL_PREFIX):
            self._events[int(channel.removeprefix(keys.USER_CHANNEL_PREFIX))].append(
                _decode_event(message["data"])
            )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
