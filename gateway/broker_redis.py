"""Redis pub/sub backend of the gateway's broker.

A pub/sub connection can die quietly (a failover, CLIENT KILL, an output-buffer limit): the
failure reported most against other chat servers is a listener that stops hearing while its
health check stays green. Here a dropped connection surfaces as an error in the read loop; the
broker then reconnects with backoff, subscribes every channel again, and reports
:class:`Resubscribed` so the gateway can tell its clients to sync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from chatkit.redis_client import REDIS_DOWN
from gateway.broker import Delivery, Resubscribed

log = logging.getLogger(__name__)


class RedisBroker:
    def __init__(self, url: str) -> None:
        self._redis = Redis.from_url(url, health_check_interval=2, socket_keepalive=True, socket_connect_timeout=5)
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._up = False

    @property
    def subscribed(self) -> bool:
        return self._up

    async def connect(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.connect()  # type: ignore[no-untyped-call]
        if self._channels:
            await self._pubsub.subscribe(*self._channels)
        self._up = True

    async def disconnect(self) -> None:
        self._up = False
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        await self._redis.aclose()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._send("subscribe", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._send("unsubscribe", channel)

    async def next_message(self) -> Delivery | Resubscribed:
        while True:
            pubsub = self._pubsub
            try:
                if pubsub is None or not self._up:
                    raise ConnectionError("not connected")
                message: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
            except REDIS_DOWN as exc:
                return await self._reconnect(f"{type(exc).__name__}: {exc}")
            if message is not None and message.get("type") == "message":
                channel = message["channel"]
                return Delivery(channel.decode() if isinstance(channel, bytes) else channel, message["data"])

    async def _send(self, command: str, channel: str) -> None:
        if self._pubsub is None or not self._up:
            return  # reconnecting: the channel set is replayed on reconnect
        try:
            await getattr(self._pubsub, command)(channel)
        except REDIS_DOWN as exc:
            # The read loop will see the same failure and resubscribe everything.
            log.warning("%s %s failed: %s", command, channel, exc)

    async def _reconnect(self, reason: str) -> Resubscribed:
        self._up = False
        log.warning("pub/sub connection lost (%s); resubscribing", reason)
        delay = 0.05
        while True:
            old, self._pubsub = self._pubsub, None
            if old is not None:
                with contextlib.suppress(*REDIS_DOWN):
                    await old.aclose()  # type: ignore[no-untyped-call]
            try:
                await self.connect()
            except REDIS_DOWN as exc:
                log.warning("pub/sub reconnect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            log.info("pub/sub resubscribed to %d channels", len(self._channels))
            return Resubscribed(reason)
