"""The gateway's Redis pub/sub broker never goes deaf: a killed subscription connection, a
restarted server, or a link that silently stops delivering is noticed, every channel is
subscribed again, and the gateway is told (Resubscribed) so its clients can sync."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio

from chatkit.settings import Settings
from gateway.broker import Delivery, Resubscribed
from gateway.broker_redis import PROBE_SECONDS, RedisBroker
from tests.support.polling import wait_until
from tests.support.stack import cancel_and_wait
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def publisher(rds: redis.asyncio.Redis) -> redis.asyncio.Redis:
    return rds


async def open_broker(url: str, *channels: str) -> RedisBroker:
    broker = RedisBroker(url)
    for channel in channels:
        await broker.subscribe(channel)
    await broker.connect()
    return broker


async def publish_until_heard(
    publisher: redis.asyncio.Redis, broker: RedisBroker, channel: str, data: bytes
) -> Delivery:
    """Publish until the broker hears it: a SUBSCRIBE takes effect asynchronously."""
    for _ in range(100):
        await publisher.publish(channel, data)
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(broker.next_message(), 0.2)
            assert isinstance(item, Delivery), item
            return item
    raise AssertionError(f"nothing heard on {channel}")


async def test_delivers_and_follows_subscriptions(settings: Settings, publisher: redis.asyncio.Redis) -> None:
    broker = await open_broker(settings.redis_url, "chat:user:1")
    try:
        first = await publish_until_heard(publisher, broker, "chat:user:1", b"hello")
        assert first == Delivery("chat:user:1", b"hello")
        await broker.subscribe("chat:user:2")
        assert (await publish_until_heard(publisher, broker, "chat:user:2", b"x")).channel == "chat:user:2"
        await broker.unsubscribe("chat:user:1")
        await publisher.publish("chat:user:1", b"not for us")
        await publisher.publish("chat:user:2", b"for us")
        # Delivered in order, so the first thing heard after the unsubscribe is the second.
        # publish_until_heard may have published b"x" more than once; skip the extra copies.
        item: Delivery | Resubscribed = Delivery("chat:user:2", b"x")
        while item == Delivery("chat:user:2", b"x"):
            item = await asyncio.wait_for(broker.next_message(), 5)
        assert item == Delivery("chat:user:2", b"for us")
    finally:
        await broker.disconnect()


async def test_a_killed_subscription_is_noticed_and_restored(
    settings: Settings, publisher: redis.asyncio.Redis
) -> None:
    broker = await open_broker(settings.redis_url, "chat:user:7")
    try:
        await publish_until_heard(publisher, broker, "chat:user:7", b"before")
        killed = await publisher.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        assert int(killed) >= 1
        item = await asyncio.wait_for(broker.next_message(), 10)
        assert isinstance(item, Resubscribed)
        assert broker.subscribed
        assert await publish_until_heard(publisher, broker, "chat:user:7", b"after") == Delivery(
            "chat:user:7", b"after"
        )
    finally:
        await broker.disconnect()


@pytest.mark.slow
async def test_a_silent_link_is_noticed_by_its_probe(settings: Settings, publisher: redis.asyncio.Redis) -> None:
    proxy = TcpProxy.for_url(settings.redis_url)
    await proxy.start()
    broker = await open_broker(proxy.url(settings.redis_url), "chat:user:9")
    try:
        await publish_until_heard(publisher, broker, "chat:user:9", b"before")
        proxy.pause()
        # Nothing arrives and nothing closes: only the PING probe can tell.
        outage = asyncio.create_task(broker.next_message())
        await wait_until(
            lambda: not broker.subscribed or outage.done(), timeout=4 * PROBE_SECONDS + 10,
            what="the broker to notice the silent link",
        )
        assert not broker.subscribed, f"the silent link was not noticed; heard {outage.result()}"
        # Reconnecting cannot succeed while nothing gets through: after two more attempts
        # through the proxy, still not subscribed.
        attempts = proxy.accepted
        await wait_until(lambda: proxy.accepted >= attempts + 2, what="two attempts to reconnect")
        assert not broker.subscribed and not outage.done()
        proxy.resume()
        item = await asyncio.wait_for(outage, 4 * PROBE_SECONDS + 5)
        assert isinstance(item, Resubscribed) and "PING" in item.reason
        assert broker.subscribed
        assert (await publish_until_heard(publisher, broker, "chat:user:9", b"after")).data == b"after"
    finally:
        if "outage" in locals():
            await cancel_and_wait(outage)
        await broker.disconnect()
        await proxy.stop()
