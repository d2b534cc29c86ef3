"""chatkit.streams.StreamConsumer on the Redis layer, against a real server: entries a dead
consumer left pending are claimed with their delivery count, an entry deleted while pending is
skipped, one delivered too often is dead-lettered (copy and acknowledgement together), and a
group that vanished is created again."""

from __future__ import annotations

import asyncio

import redis.asyncio

from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD
from chatkit.redis import RedisClient
from chatkit.streams import Entry, StreamConsumer, ensure_group

STREAM, GROUP = "test:stream", "test-group"


def consumer(redis_client: RedisClient, name: str) -> StreamConsumer:
    return StreamConsumer(redis_client, [STREAM], GROUP, name, block_ms=50, claim_idle_ms=100, max_deliveries=2)


async def parked_entries(rds: redis.asyncio.Redis) -> list[dict[bytes, bytes]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await rds.xrange(keys.DEAD_LETTERS)  # type: ignore[assignment]
    return [fields for _, fields in entries]


async def read_until_some(reader: StreamConsumer) -> list[Entry]:
    for _ in range(200):
        if entries := await reader.read(10):
            return entries
        await asyncio.sleep(0.02)
    raise AssertionError(f"{reader.consumer} read nothing")


async def test_claims_counts_skips_deleted_and_dead_letters(
    redis_client: RedisClient, rds: redis.asyncio.Redis
) -> None:
    await ensure_group(redis_client, STREAM, GROUP)
    await ensure_group(redis_client, STREAM, GROUP)  # BUSYGROUP is no error
    ids = [await rds.xadd(STREAM, {ENTRY_FIELD: f"m{index}".encode()}) for index in range(3)]
    dead, alive = consumer(redis_client, "dead"), consumer(redis_client, "alive")
    try:
        first = await read_until_some(dead)
        assert [(e.id, e.data, e.deliveries) for e in first] == [(i, f"m{n}".encode(), 1) for n, i in enumerate(ids)]
        await rds.xdel(STREAM, ids[1])
        # "dead" never acknowledges: once idle, "alive" claims what is left, delivered twice now.
        claimed = await read_until_some(alive)
        assert [(e.id, e.deliveries) for e in claimed] == [(ids[0], 2), (ids[2], 2)]
        # Not acknowledged again: past max_deliveries, parked instead of returned.
        for _ in range(200):
            if len(await parked_entries(rds)) == 2:
                break
            assert await alive.read(10) == []
            await asyncio.sleep(0.02)
        parked = await parked_entries(rds)
        assert [p[b"id"] for p in parked] == [ids[0], ids[2]]
        assert all(p[b"stream"] == STREAM.encode() and p[b"deliveries"] == b"3" for p in parked)
        assert [p[ENTRY_FIELD] for p in parked] == [b"m0", b"m2"]
        assert b"still failing after 2 deliveries" in parked[0][b"reason"]
        assert (await rds.xpending(STREAM, GROUP))["pending"] == 0
    finally:
        await dead.close()
        await alive.close()


async def test_a_vanished_group_is_created_again(redis_client: RedisClient, rds: redis.asyncio.Redis) -> None:
    await ensure_group(redis_client, STREAM, GROUP)
    reader = consumer(redis_client, "reader")
    try:
        await rds.delete(STREAM)
        assert await reader.read(10) == []
        assert [g["name"] for g in await rds.xinfo_groups(STREAM)] == [GROUP.encode()]
        await rds.xadd(STREAM, {ENTRY_FIELD: b"after"})
        [entry] = await read_until_some(reader)
        assert entry.data == b"after"
        await reader.ack(STREAM, entry.id)
        assert (await rds.xpending(STREAM, GROUP))["pending"] == 0
    finally:
        await reader.close()
