"""Consuming Redis streams with a consumer group: each entry is handled by one replica, an
entry left pending by a replica that died is claimed by another (XAUTOCLAIM), and one that
keeps failing is moved to the dead-letter stream with the reason. A consumer reads the streams
of every partition (chatkit/partitions.py) in one XREADGROUP; each entry says its stream.

Everything goes through one :class:`~chatkit.redis.RedisClient`: the blocking XREADGROUP on a
link of its own (it would hold up every command behind it), the rest on the client's shared
link. Both fail alike (chatkit.redis.errors)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import msgspec

from chatkit import keys, metrics
from chatkit.envelopes import ENTRY_FIELD
from chatkit.redis import BusyGroup, ConnectionLost, NoGroup, RedisClient, first_error

log = logging.getLogger(__name__)


# How long past its BLOCK time a read may take before the connection is presumed dead.
READ_GRACE_SECONDS = 5.0
# After that, how long a read still waits for a reply already on its way (see _answer).
PAUSE_GRACE_SECONDS = 0.5
# The dead-letter stream keeps about this many entries.
DEAD_LETTERS_MAXLEN = 100_000


class Entry(msgspec.Struct, gc=False):
    """One stream entry. Untracked by the garbage collector (it holds only bytes and an int):
    a worker holds thousands at a time, and tracked they would make every collection slower."""

    id: bytes
    data: bytes
    # How often the group has handed this entry out; 1 on a first delivery.
    deliveries: int = 1
    # The stream it came from.
    stream: str = ""


async def ensure_group(redis: RedisClient, stream: str, group: str) -> None:
    # "0", not "$": requests queued before the first replica ever started are still handled.
    # BUSYGROUP: another replica (or an earlier start) created it.
    with contextlib.suppress(BusyGroup):
        await redis.call("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")


async def ensure_groups(redis: RedisClient, streams: Sequence[str], group: str) -> None:
    """:func:`ensure_group` for every stream, pipelined."""
    await asyncio.gather(*(ensure_group(redis, stream, group) for stream in streams))


class StreamConsumer:
    def __init__(
        self,
        redis: RedisClient,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        block_ms: int = 1000,
        claim_idle_ms: int = 15_000,
        max_deliveries: int = 5,
    ) -> None:
        if isinstance(streams, str):  # a str is a Sequence[str] too: one letter per stream
            raise TypeError(f"streams: expected a list of stream names, got the string {streams!r}")
        self.redis = redis
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self._next_claim = 0.0
        self._reads = redis.blocking_link()
        self._read_args = ("STREAMS", *self.streams, *(">" for _ in self.streams))
        # XREADGROUP's COUNT is per stream: entries read beyond ``count`` wait here (already
        # delivered to this consumer) and are what the next read returns. COUNT stays ``count``
        # per stream, not a share of it: one busy partition is then read ``count`` at a time
        # (3.6 µs of Valkey time per entry, against 15 µs read one by one; docs/PERFORMANCE.md).
        self._surplus: list[Entry] = []
        # Metrics name the streams' family (chat:requests:auth), not each partition.
        self._dead_lettered = metrics.DEAD_LETTERED.labels(keys.family(self.streams[0]))

    async def read(self, count: int) -> list[Entry]:
        """Entries to handle: stale ones of dead replicas first, then new ones (blocking
        up to ``block_ms``), at most ``count``. Entries that failed too often are dead-lettered,
        not returned."""
        if self._surplus:
            taken, self._surplus = self._surplus[:count], self._surplus[count:]
            return taken
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
            claimed = await self._claim(count)
            if claimed:
                return claimed
        read = self._reads.call(
            "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
            "BLOCK", self.block_ms, *self._read_args,
        )
        try:
            reply = await _answer(read, self.block_ms / 1000 + READ_GRACE_SECONDS)
        except TimeoutError:
            # No answer long after the block ran out: the link is dead without having said so.
            await self._reads.drop()
            raise ConnectionLost(
                f"no reply to XREADGROUP on {len(self.streams)} streams from {self.redis.address}"
            ) from None
        except NoGroup:
            # A stream or group vanished (Redis lost its data): recreate, read again.
            await ensure_groups(self.redis, self.streams, self.group)
            return []
        # [[stream, [[id, [field, value, ...]], ...]]], or None when the block timed out.
        streams = cast(list[tuple[bytes, list[tuple[bytes, list[bytes]]]]], reply or [])
        entries = [
            _entry(entry_id, fields, stream.decode()) for stream, items in streams for entry_id, fields in items
        ]
        if len(entries) > count:
            entries, self._surplus = entries[:count], entries[count:]
        return entries

    async def close(self) -> None:
        await self._reads.close()

    async def ack(self, stream: str, *ids: bytes) -> None:
        if ids:
            await self.redis.call("XACK", stream, self.group, *ids)

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Park an entry that cannot be handled, with why, and stop redelivering it: the copy
        and the acknowledgement in one transaction."""
        replies = await self.redis.transaction(
            (
                "XADD", keys.DEAD_LETTERS, "MAXLEN", "~", DEAD_LETTERS_MAXLEN, "*",
                "stream", entry.stream, "id", entry.id, "reason", reason[:2000],
                "deliveries", entry.deliveries, ENTRY_FIELD, entry.data,
            ),
            ("XACK", entry.stream, self.group, entry.id),
        )
        if (error := first_error(replies)) is not None:
            raise error
        self._dead_lettered.inc()
        log.error("dead-lettered %s entry %s after %d deliveries: %s",
                  entry.stream, entry.id.decode(), entry.deliveries, reason)

    async def _claim(self, count: int) -> list[Entry]:
        """Stale entries of the streams, at most ``count`` in all (an entry claimed is this
        consumer's until handled, so no more are claimed than will be handled now)."""
        found: list[Entry] = []
        for stream in self.streams:
            if len(found) >= count:
                break
            found += await self._claim_one(stream, count - len(found))
        return found

    async def _claim_one(self, stream: str, count: int) -> list[Entry]:
        try:
            reply = await self.redis.call(
                "XAUTOCLAIM", stream, self.group, self.consumer, self.claim_idle_ms, "0-0", "COUNT", count
            )
        except NoGroup:
            await ensure_group(self.redis, stream, self.group)
            return []
        # [next start, [[id, [field, value, ...]], ...], deleted ids]. An entry deleted from
        # the stream while pending is left out (or, before Redis 7, comes with no fields).
        claimed = [_entry(item[0], item[1], stream) for item in cast(list[Any], reply[1]) if item and item[1]]
        if not claimed:
            return []
        await self._count_deliveries(stream, claimed)
        fresh: list[Entry] = []
        for entry in claimed:
            if entry.deliveries > self.max_deliveries:
                await self.dead_letter(entry, f"still failing after {entry.deliveries - 1} deliveries")
            else:
                fresh.append(entry)
        log.warning("claimed %d stale %s entries", len(claimed), stream)
        return fresh

    async def _count_deliveries(self, stream: str, entries: list[Entry]) -> None:
        # [[id, consumer, idle ms, times delivered], ...]
        pending = await self.redis.call(
            "XPENDING", stream, self.group, entries[0].id, entries[-1].id, len(entries) * 2, self.consumer
        )
        counts = {row[0]: int(row[3]) for row in cast(list[list[Any]], pending)}
        for entry in entries:
            entry.deliveries = counts.get(entry.id, entry.deliveries)


async def _answer(call: Awaitable[object], seconds: float) -> object:
    """``call``'s result, or TimeoutError after ``seconds``, with one more look before giving
    up: a process that was stopped (SIGSTOP, a debugger, a suspended VM) wakes up to timers that
    all ran out while the reply it waited for sits unread in the socket. Its link is fine."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done:
            done, _ = await asyncio.wait({task}, timeout=PAUSE_GRACE_SECONDS)
    finally:
        # Cancelled (a stop), or no answer: the read must not outlive this call.
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if not done:
        raise TimeoutError
    return task.result()


def _entry(entry_id: bytes, fields: list[bytes], stream: str) -> Entry:
    if len(fields) == 2 and fields[0] == ENTRY_FIELD:
        # Every entry this project writes: its only field.
        return Entry(entry_id, fields[1], 1, stream)
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == ENTRY_FIELD:
            return Entry(id=entry_id, data=fields[index + 1], stream=stream)
    return Entry(id=entry_id, data=b"", stream=stream)
