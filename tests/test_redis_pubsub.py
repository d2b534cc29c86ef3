"""chatkit.redis's subscriber link: after its connection is killed it subscribes every channel
again, in chunks, and says so. (The PING probe of a silent link: tests/test_broker.py.)"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio

from chatkit.redis import Reconnected, Subscriber, parse_address
from chatkit.redis.pubsub import SUBSCRIBE_CHUNK
from chatkit.settings import Settings


async def heard(publisher: redis.asyncio.Redis, subscriber: Subscriber[tuple[str, bytes]], channel: str) -> bool:
    for _ in range(100):
        await publisher.publish(channel, b"ping")
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(subscriber.next_message(), 0.2)
            assert item == (channel, b"ping"), item
            return True
    return False


async def test_every_channel_is_subscribed_again_after_a_kill(settings: Settings, rds: redis.asyncio.Redis) -> None:
    subscriber = Subscriber(parse_address(settings.redis_url), lambda channel, data: (channel, data))
    channels = [f"chat:user:{index}" for index in range(2 * SUBSCRIBE_CHUNK + 7)]
    for channel in channels:
        await subscriber.subscribe(channel)
    try:
        await subscriber.connect()
        assert subscriber.subscribed
        assert await heard(rds, subscriber, channels[-1])
        killed = await rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        assert int(killed) >= 1
        # Extra copies of the first ping (published again before it was heard) may come first.
        item = await asyncio.wait_for(subscriber.next_message(), 10)
        while item == (channels[-1], b"ping"):
            item = await asyncio.wait_for(subscriber.next_message(), 10)
        assert isinstance(item, Reconnected) and item.reason
        assert subscriber.subscribed
        # Reconnected comes only once the server confirmed every SUBSCRIBE.
        counts = await rds.pubsub_numsub(channels[0], channels[SUBSCRIBE_CHUNK], channels[-1])
        assert [count for _, count in counts] == [1, 1, 1]
        assert await heard(rds, subscriber, channels[SUBSCRIBE_CHUNK + 1])
    finally:
        await subscriber.disconnect()
