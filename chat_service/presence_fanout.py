"""chat_service's part of presence (chatkit/presence.py): telling a user's connected dialog
peers when the user comes online or goes offline, and sweeping gateways that died.

Changes come from the presence changes stream (written by the gateways' and the sweeper's
scripts), one consumer group for all replicas: each change is fanned out by one replica. At
most once: an entry is acknowledged whether or not its fan-out worked (a late presence event
is worse than none; `dialogs` always tells the truth)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import msgspec

from chat_service import store
from chatkit import keys, presence
from chatkit.backoff import Backoff
from chatkit.envelopes import UserEvent
from chatkit.redis import REDIS_DOWN, RedisClient
from chatkit.settings import Settings
from chatkit.streams import StreamConsumer, ensure_group
from chatkit.wire import PresenceEvent

log = logging.getLogger(__name__)

_decode_change = msgspec.json.Decoder(presence.PresenceChange).decode
_encode = msgspec.json.Encoder().encode


def presence_event(change: presence.PresenceChange) -> bytes:
    frame = PresenceEvent(user_id=change.user_id, online=change.online)
    return _encode(UserEvent(frame=msgspec.Raw(_encode(frame)), ephemeral=True))


async def fan_out(pool: asyncpg.Pool, redis: RedisClient, change: presence.PresenceChange) -> int:
    """Tell the user's connected peers; how many were told."""
    peers = [peer.id for peer in await store.list_dialogs(pool, change.user_id)]
    return await presence.publish_to_online(redis, peers, presence_event(change))


async def run_fanout(pool: asyncpg.Pool, redis: RedisClient, settings: Settings) -> None:
    consumer = StreamConsumer(
        redis, [keys.PRESENCE_CHANGES], keys.PRESENCE_GROUP, settings.instance,
        claim_idle_ms=settings.claim_idle_ms, max_deliveries=settings.max_deliveries,
    )
    backoff = Backoff()
    try:
        while True:
            try:
                await ensure_group(redis, keys.PRESENCE_CHANGES, keys.PRESENCE_GROUP)
                while True:
                    entries = await consumer.read(100)
                    backoff.reset()
                    for entry in entries:
                        try:
                            await fan_out(pool, redis, _decode_change(entry.data))
                        except REDIS_DOWN:
                            raise
                        except Exception as exc:
                            log.warning("presence change %s not fanned out: %r", entry.id.decode(), exc)
                    await consumer.ack(keys.PRESENCE_CHANGES, *(entry.id for entry in entries))
            except REDIS_DOWN as exc:
                log.warning("presence fan-out: Redis unreachable (%s); retrying", exc)
                await backoff.wait()
            except Exception:
                log.exception("presence fan-out failed; starting again")
                await backoff.wait()
    finally:
        await consumer.close()


async def run_sweeper(redis: RedisClient, settings: Settings) -> None:
    """Every third of the presence ttl, take the users of dead gateways offline."""
    while True:
        await asyncio.sleep(settings.presence_ttl_seconds / 3)
        try:
            gone = await presence.sweep_all(redis)
            if gone:
                log.info("presence: %d users of dead gateways went offline", gone)
        except REDIS_DOWN as exc:
            log.warning("presence sweep failed (%s)", exc)
        except Exception:
            log.exception("presence sweep failed")
