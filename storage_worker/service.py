"""The storage worker: moves accepted messages from the messages stream into their dialogs'
tables, then acknowledges them and drops them from the dialogs' pending sets.

Order matters: an entry is acknowledged, and its message removed from the pending set, only
after its row is committed, so a message is always in the table, the pending set or both (the
history reads merge the two), and a worker killed at any point leaves its entries pending for
another replica to claim and write again, which is a no-op for rows already stored.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from chatkit import keys
from chatkit.db import CONNECTION_ERRORS, apply_schema, create_pool
from chatkit.errors import Unavailable
from chatkit.health import Health
from chatkit.metrics import STORAGE_WRITE_SECONDS
from chatkit.ops_server import ops_server
from chatkit.partitions import Partitions
from chatkit.redis import REDIS_DOWN, RedisClient, ReplyError
from chatkit.settings import Settings
from chatkit.stream_metrics import Watched
from chatkit.streams import Entry, StreamConsumer, ensure_groups
from storage_worker import sql
from storage_worker.batch import DialogBatch, group
from storage_worker.outage import Outage, raise_if_cancelled
from storage_worker.stats import Counts, Stats
from storage_worker.trim import Trimmer
from storage_worker.writer import StoreResult, Writer, describe, is_outage

log = logging.getLogger(__name__)

# How often acknowledged entries are trimmed from the messages stream.
TRIM_INTERVAL_SECONDS = 5.0
# Batches in flight at once, each lane with a connection of its own.
LANES = 2
# Batches read ahead of the lanes, so a lane that finishes starts on the next one at once. One
# is enough to keep PostgreSQL busy; more would only hold entries a claim could hand out again.
READ_AHEAD = 1
# One connection per lane, and one for start-up.
POOL_SIZE = LANES + 1


async def serve(settings: Settings) -> None:
    """Store messages until cancelled; outages of Redis or PostgreSQL pause it, never end it."""
    redis = RedisClient.from_url(settings.redis_url)
    partitions = tuple(keys.messages(tag) for tag in Partitions(settings.partitions).tags())
    watched = [Watched(keys.MESSAGES_FAMILY, keys.STORAGE_GROUP, partitions), Watched(keys.DEAD_LETTERS)]
    health = Health("storage_worker", redis, watched, needs_database=True)
    try:
        async with ops_server(health, settings.metrics_host, settings.metrics_port):
            pool = await open_database(settings)
            health.pool = pool
            try:
                worker = StorageWorker(redis, pool, settings)
                worker.health = health
                await worker.run()
            finally:
                health.pool = None
                await close_pool(pool)
    finally:
        await redis.close()


async def open_database(settings: Settings) -> asyncpg.Pool:
    outage = Outage("PostgreSQL")
    while True:
        try:
            # No floor of idle connections: the lanes hold their own, and asyncpg's task that
            # restores a floor would keep connecting through an outage and can leave a socket
            # behind when the pool closes mid-attempt.
            pool = await create_pool(settings.database_url, min_size=0, max_size=POOL_SIZE)
        except Unavailable as exc:
            outage.down(exc)
            await outage.pause()
            continue
        try:
            raise_if_cancelled()
            # The worker never creates dialog tables, but their foreign key needs `users`.
            await apply_schema(pool)
            async with pool.acquire() as conn:
                await sql.install(conn)
            raise_if_cancelled()
        except CONNECTION_ERRORS as exc:
            await close_pool(pool)
            outage.down(exc)
            await outage.pause()
            continue
        except BaseException:
            await close_pool(pool)
            raise
        outage.up()
        return pool


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=5)
    except TimeoutError:
        # A connection stuck on a dead server would hold a graceful close forever.
        pool.terminate()


class StorageWorker:
    # Told when the worker has joined its consumer group (serve sets it).
    health: Health | None = None

    def __init__(self, redis: RedisClient, pool: asyncpg.Pool, settings: Settings) -> None:
        self.redis = redis
        self.pool = pool
        self.settings = settings
        self.partitions = Partitions(settings.partitions)
        # Every partition of the messages stream, read in one XREADGROUP.
        self.streams = [keys.messages(tag) for tag in self.partitions.tags()]
        self.consumer = StreamConsumer(
            redis, self.streams, keys.STORAGE_GROUP, settings.instance,
            claim_idle_ms=settings.claim_idle_ms, max_deliveries=settings.max_deliveries,
        )
        self.trimmer = Trimmer(redis, self.streams, TRIM_INTERVAL_SECONDS)
        self.redis_outage = Outage("Redis")
        self.pg_outage = Outage("PostgreSQL")
        self.stats = Stats()

    async def run(self) -> None:
        # One task reads; lanes decode, write and acknowledge, each batch on its own, so Python,
        # Redis and PostgreSQL work side by side instead of taking turns: while one lane waits
        # for PostgreSQL, the other decodes or acknowledges, and the next batch is already read.
        ready: asyncio.Queue[list[Entry]] = asyncio.Queue(READ_AHEAD)
        writers = [
            Writer(
                self.pool,
                max_tables=self.settings.database_max_tables_per_connection,
                life_seconds=self.settings.database_connection_life_seconds,
            )
            for _ in range(LANES)
        ]
        try:
            await asyncio.gather(*(writer.warm() for writer in writers))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(ready))
                for writer in writers:
                    tasks.create_task(self._lane(writer, ready))
        finally:
            await self.consumer.close()

    async def _read(self, ready: asyncio.Queue[list[Entry]]) -> None:
        while True:
            try:
                await ensure_groups(self.redis, self.streams, keys.STORAGE_GROUP)
                if self.health is not None:
                    self.health.group_joined()
                while True:
                    raise_if_cancelled()
                    entries = await self.consumer.read(self.settings.storage_batch_size)
                    self.redis_outage.up()
                    if entries:
                        await ready.put(entries)
                    await self.trimmer.maybe_trim()
                    self.stats.maybe_log()
                    if 0 < len(entries) < self.settings.storage_batch_size:
                        # A short read: the backlog is gone, let the next batch fill up a little.
                        await asyncio.sleep(self.settings.storage_linger_ms / 1000)
            except REDIS_DOWN as exc:
                self.redis_outage.down(exc)
                await self.redis_outage.pause()

    async def _lane(self, writer: Writer, ready: asyncio.Queue[list[Entry]]) -> None:
        try:
            while True:
                entries = await ready.get()
                try:
                    await self.handle(entries, writer)
                except REDIS_DOWN as exc:
                    # Whatever the batch had not acknowledged stays pending and is claimed
                    # again later.
                    self.redis_outage.down(exc)
                    await self.redis_outage.pause()
        finally:
            await writer.drop()

    async def handle(self, entries: list[Entry], writer: Writer) -> None:
        """Store one batch: bad entries parked, every dialog written, the stored ones acknowledged."""
        started = time.monotonic()
        grouped = group(entries)
        for entry, reason in grouped.bad:
            # Undecodable now means undecodable forever: no point retrying.
            await self.consumer.dead_letter(entry, reason)
        results = await self._write(writer, grouped.batches)
        await self._acknowledge(results)
        counts = Counts(batches=1, entries=len(entries), dead=len(grouped.bad))
        for result in results:
            counts.inserted += result.inserted
            counts.duplicates += len(result.stored) - result.inserted
            counts.dead += await self._retry_or_park(result)
            counts.failed += len(result.failed)
        self.stats.batch(counts, len(grouped.batches), time.monotonic() - started)

    async def _write(self, writer: Writer, batches: list[DialogBatch]) -> list[StoreResult]:
        """Write every dialog of the batch, waiting out a PostgreSQL outage: nothing is
        acknowledged meanwhile, so the stream holds the backlog until the server is back."""
        while True:
            try:
                started = time.perf_counter()
                results = await writer.write(batches)
                STORAGE_WRITE_SECONDS.observe(time.perf_counter() - started)
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("unexpected failure storing %d dialogs", len(batches))
                    return [StoreResult(b.key, failed=[(item, describe(exc)) for item in b.items]) for b in batches]
                self.pg_outage.down(exc)
                await self.pg_outage.pause()
                continue
            self.pg_outage.up()
            return results

    async def _acknowledge(self, results: list[StoreResult]) -> None:
        """Acknowledge committed entries, retrying through a Redis outage: acknowledging later
        beats writing the whole batch again after a claim."""
        while True:
            try:
                await self._ack(results)
            except REDIS_DOWN as exc:
                self.redis_outage.down(exc)
                await self.redis_outage.pause()
                continue
            self.redis_outage.up()
            return

    async def _ack(self, results: list[StoreResult]) -> None:
        ids: dict[str, list[bytes]] = {}
        for result in results:
            for item in result.stored:
                ids.setdefault(item.entry.stream, []).append(item.entry.id)
        if not ids:
            return
        # One transaction: the acknowledgement and the pending-set cleanup happen together.
        # (The consumer's blocking reads are on a link of their own, so this one is never held
        # up behind a read.)
        commands: list[tuple[object, ...]] = [
            ("XACK", stream, keys.STORAGE_GROUP, *stream_ids) for stream, stream_ids in ids.items()
        ]
        for result in results:
            pending = keys.dialog_pending(self.partitions.dialog_tag(result.key), result.key.id)
            for low, high in seq_runs([item.row.seq for item in result.stored]):
                commands.append(("ZREMRANGEBYSCORE", pending, low, high))
        # A command that failed inside the transaction (a pending set of the wrong type, say)
        # comes back as an error value among EXEC's replies rather than as an exception.
        for reply in await self.redis.transaction(*commands):
            if isinstance(reply, ReplyError):
                log.error("acknowledging %d stored messages: %s", sum(map(len, ids.values())), reply)

    async def _retry_or_park(self, result: StoreResult) -> int:
        """Leave failed entries pending for a retry after a claim, or dead-letter them, with
        the real reason, once they used up their deliveries. Returns how many were parked."""
        if not result.failed:
            return 0
        parked = 0
        for item, reason in result.failed:
            if item.entry.deliveries >= self.consumer.max_deliveries:
                await self.consumer.dead_letter(item.entry, f"dialog {result.key.id}: {reason}")
                parked += 1
        if parked < len(result.failed):
            log.warning("dialog %s: %d messages not stored, retrying later: %s",
                        result.key.id, len(result.failed) - parked, result.failed[0][1])
        return parked


def seq_runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Stored seqs as runs of consecutive numbers, one ZREMRANGEBYSCORE each (usually one per
    dialog). Only seqs that were all stored are ever spanned: a gap may be a message another
    replica has not committed yet, and it must stay in the pending set until it is."""
    if not seqs:
        return []
    first = seqs[0]
    if seqs == list(range(first, first + len(seqs))):
        # The usual case, a dialog's messages in stream order: compared in C, not looped over.
        return [(first, seqs[-1])]
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs
