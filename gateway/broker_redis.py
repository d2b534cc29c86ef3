"""Redis pub/sub backend of the gateway's broker (gateway/broker.py's interface), over the Redis
layer's subscriber link (chatkit/redis/pubsub.py), which probes a silent link with PING,
resubscribes every channel with backoff and says when it did. This file only speaks the
broker's terms: a message is a :class:`Delivery`, a resubscription a :class:`Resubscribed`."""

from __future__ import annotations

from chatkit.redis import Reconnected, Subscriber, parse_address
from chatkit.redis.pubsub import PROBE_SECONDS as PROBE_SECONDS
from gateway.broker import Delivery, Resubscribed


class RedisBroker:
    def __init__(self, url: str) -> None:
        self._subscriber = Subscriber(parse_address(url), Delivery)

    @property
    def subscribed(self) -> bool:
        return self._subscriber.subscribed

    async def connect(self) -> None:
        await self._subscriber.connect()

    async def disconnect(self) -> None:
        await self._subscriber.disconnect()

    async def subscribe(self, channel: str) -> None:
        await self._subscriber.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._subscriber.unsubscribe(channel)

    async def next_message(self) -> Delivery | Resubscribed:
        item = await self._subscriber.next_message()
        if isinstance(item, Reconnected):
            return Resubscribed(item.reason)
        return item
