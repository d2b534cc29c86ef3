"""Consuming a Redis stream with a consumer group: each entry is handled by one replica, an
entry left pending by a replica that died is claimed by another (XAUTOCLAIM), and one that
keeps failing is moved to the dead-letter stream with the reason."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chatkit import keys
from chatkit.autopipeline import AutoPipeline
from chatkit.envelopes import ENTRY_FIELD

log = logging.getLogger(__name__)


# How long past its BLOCK time a read may take before the connection is presumed dead.
READ_GRACE_SECONDS = 5.0


class Entry(msgspec.Struct, gc=False):
    """One stream entry. Untracked by the garbage collector (it holds only bytes and an int):
    a worker holds thousands at a time, and tracked they would make every collection slower."""

    id: bytes
    data: bytes
    # How often the group has handed this entry out; 1 on a first delivery.
    deliveries: int = 1


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    # "0", not "$": requests queued before the first replica ever started are still handled.
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        block_ms: int = 1000,
        claim_idle_ms: int = 15_000,
        max_deliveries: int = 5,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self._next_claim = 0.0
        # Reads go over a connection of their own, parsed by hiredis: a blocking XREADGROUP
        # must not hold up other commands, and redis-py's per-entry dicts cost more than the
        # entries' own handling.
        self._reads = AutoPipeline.beside(redis)

    async def read(self, count: int) -> list[Entry]:
        """Entries to handle: stale ones of dead replicas first, then new ones (blocking
        up to ``block_ms``). Entries that failed too often are dead-lettered, not returned."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
            claimed = await self._claim(count)
            if claimed:
                return claimed
        read = self._reads.call(
            "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
            "BLOCK", self.block_ms, "STREAMS", self.stream, ">",
        )
        try:
            reply = await asyncio.wait_for(read, self.block_ms / 1000 + READ_GRACE_SECONDS)
        except TimeoutError:
            # No answer long after the block ran out: the link is dead without having said so.
            await self._reads.close()
            raise ConnectionError(f"no reply to XREADGROUP on {self.stream}") from None
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group vanished (Redis lost its data): recreate, read again.
            await ensure_group(self.redis, self.stream, self.group)
            return []
        # [[stream, [[id, [field, value, ...]], ...]]], or None when the block timed out.
        streams = cast(list[tuple[bytes, list[tuple[bytes, list[bytes]]]]], reply or [])
        return [_raw_entry(entry_id, fields) for _, items in streams for entry_id, fields in items]

    async def close(self) -> None:
        await self._reads.close()

    async def ack(self, *ids: bytes) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Park an entry that cannot be handled, with why, and stop redelivering it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                keys.DEAD_LETTERS,
                {
                    b"stream": self.stream,
                    b"id": entry.id,
                    b"reason": reason[:2000],
                    b"deliveries": str(entry.deliveries),
                    ENTRY_FIELD: entry.data,
                },
                maxlen=100_000,
                approximate=True,
            )
            pipe.xack(self.stream, self.group, entry.id)
            await pipe.execute()
        log.error("dead-lettered %s entry %s after %d deliveries: %s",
                  self.stream, entry.id.decode(), entry.deliveries, reason)

    async def _claim(self, count: int) -> list[Entry]:
        try:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms, start_id="0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_group(self.redis, self.stream, self.group)
            return []
        # Entries deleted from the stream while pending come back as None: nothing to do.
        claimed = [_entry(entry_id, fields) for entry_id, fields in reply[1] if fields]
        if not claimed:
            return []
        await self._count_deliveries(claimed)
        fresh: list[Entry] = []
        for entry in claimed:
            if entry.deliveries > self.max_deliveries:
                await self.dead_letter(entry, f"still failing after {entry.deliveries - 1} deliveries")
            else:
                fresh.append(entry)
        log.warning("claimed %d stale %s entries", len(claimed), self.stream)
        return fresh

    async def _count_deliveries(self, entries: list[Entry]) -> None:
        pending = await self.redis.xpending_range(
            self.stream, self.group, min=entries[0].id, max=entries[-1].id,
            count=len(entries) * 2, consumername=self.consumer,
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        for entry in entries:
            entry.deliveries = counts.get(entry.id, entry.deliveries)


def _raw_entry(entry_id: bytes, fields: list[bytes]) -> Entry:
    if len(fields) == 2 and fields[0] == ENTRY_FIELD:
        # Every entry this project writes: its only field.
        return Entry(entry_id, fields[1])
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == ENTRY_FIELD:
            return Entry(id=entry_id, data=fields[index + 1])
    return Entry(id=entry_id, data=b"")


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(id=entry_id, data=fields.get(ENTRY_FIELD, b""))


async def backoff_sleep(attempt: int, *, cap: float = 2.0) -> None:
    await asyncio.sleep(min(cap, 0.05 * 2 ** min(attempt, 10)))
