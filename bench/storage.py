"""storage_worker throughput against its ceiling, a raw ``COPY`` into the same PostgreSQL.

The messages stream is filled first (entries exactly as chat_service's accept.lua writes them:
a :class:`chatkit.wire.Message` as JSON under :data:`chatkit.envelopes.ENTRY_FIELD`), then a
real ``python -m storage_worker`` is started and timed from the moment its consumer group
exists until the group has nothing left to read and nothing pending. The ceiling writes the
same rows into the same (emptied) tables with asyncpg's ``copy_records_to_table``, one dialog
per connection of a pool of 10, with every row already built: the ceiling, not a like-for-like
(the worker also reads, decodes and acknowledges every entry in Redis, through two
connections). Both run :data:`ROUNDS` times; the round with the median ratio is reported.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis

from bench.procs import Group
from chatkit import keys
from chatkit.db import apply_schema, create_pool, dialog_table_ddl
from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD
from chatkit.partitions import Partitions
from chatkit.settings import Settings
from chatkit.wire import Message, UserRef, wire_time
from devstack.embedded import start_postgres, start_valkey

DIALOGS = 100
#: The COPY ceiling's connections (chatkit.db.create_pool's default).
POOL_SIZE = 10
DRAIN_TIMEOUT = 300.0
#: Rounds of worker-then-COPY: a single round of about a second swings by a tenth either way.
ROUNDS = 3
_encode = msgspec.json.Encoder().encode

Row = tuple[int, uuid.UUID, datetime, int, str]


def make_messages(total: int, dialogs: int) -> tuple[list[DialogKey], list[Message]]:
    """``total`` messages spread round-robin over ``dialogs`` dialogs of users 2k+1 and 2k+2."""
    dialog_keys = [DialogKey(2 * d + 1, 2 * d + 2) for d in range(dialogs)]
    seqs = [0] * dialogs
    base = datetime(2026, 1, 1, tzinfo=UTC)
    messages: list[Message] = []
    for n in range(total):
        d = n % dialogs
        seqs[d] += 1
        key = dialog_keys[d]
        sender = key.lo if n % 2 else key.hi
        sent_at = wire_time(base + timedelta(milliseconds=n))
        messages.append(Message(
            id=str(uuid.uuid4()), dialog_id=key.id, seq=seqs[d], sender=UserRef(id=sender, username=f"u{sender}"),
            text=f"benchmark message {n} " + "x" * 40, sent_at=sent_at,
        ))
    return dialog_keys, messages


def rows_of(message: Message) -> Row:
    sent_at = datetime.fromisoformat(message.sent_at.replace("Z", "+00:00"))
    return (message.seq, uuid.UUID(message.id), sent_at, message.sender.id, message.text)


async def prepare_database(pool: asyncpg.Pool, dialog_keys: list[DialogKey]) -> None:
    await apply_schema(pool)
    users = max(key.hi for key in dialog_keys)
    await pool.executemany(
        "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
        [(u, f"u{u}", f"u{u}@bench.example.org") for u in range(1, users + 1)],
    )
    for key in dialog_keys:
        await pool.execute(dialog_table_ddl(key))
    # As open_dialog leaves them: the worker moves each dialog's row with every batch.
    await pool.executemany("INSERT INTO dialogs (lo, hi) VALUES ($1, $2)", [(k.lo, k.hi) for k in dialog_keys])


# The messages stream's partitions as the worker under test reads them (default CHAT_PARTITIONS).
PARTITIONS = Partitions(Settings().partitions)


async def fill_stream(redis: aioredis.Redis, messages: list[Message], progress: Callable[[str], None]) -> None:
    for start in range(0, len(messages), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for message in messages[start:start + 5000]:
                stream = keys.messages(PARTITIONS.dialog_tag(DialogKey.parse(message.dialog_id)))
                pipe.xadd(stream, {ENTRY_FIELD: _encode(message)})
            await pipe.execute()
    progress(f"  {len(messages):,} entries on the {PARTITIONS.count} partitions of the messages stream")


async def drained(redis: aioredis.Redis) -> tuple[bool, int]:
    """(whether the storage group has read and acknowledged everything, entries still to do)."""
    done, left = True, 0
    for tag in PARTITIONS.tags():
        one_done, one_left = await _drained(redis, keys.messages(tag))
        if one_left < 0:
            return False, -1
        done, left = done and one_done, left + one_left
    return done, left


async def _drained(redis: aioredis.Redis, stream: str) -> tuple[bool, int]:
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:
        return False, -1
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        if name == keys.STORAGE_GROUP:
            lag = group.get("lag")
            left = int(lag or 0) + int(group["pending"])
            return left == 0 and lag is not None, left
    return False, -1


async def time_worker(
    root: Path, redis_url: str, database_url: str, total: int, progress: Callable[[str], None]
) -> float:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        with Group(root / "logs") as group:
            group.spawn_python("storage_worker", "storage_worker", env={
                "CHAT_REDIS_URL": redis_url, "CHAT_DATABASE_URL": database_url, "CHAT_LOG_LEVEL": "WARNING",
                "CHAT_INSTANCE": "bench-storage-worker",
            })
            deadline = time.monotonic() + DRAIN_TIMEOUT
            started: float | None = None
            next_report = time.monotonic() + 1.0
            while True:
                group.check()
                done, left = await drained(redis)
                now = time.monotonic()
                if started is None and left >= 0:
                    started = now
                if done and started is not None:
                    return now - started
                if now > deadline:
                    raise TimeoutError(f"storage_worker did not drain {total:,} entries in {DRAIN_TIMEOUT:g} s")
                if now >= next_report and left >= 0:
                    progress(f"  storage_worker: {total - left:,}/{total:,} stored")
                    next_report = now + 1.0
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


async def time_copy(pool: asyncpg.Pool, dialog_keys: list[DialogKey], messages: list[Message]) -> float:
    by_dialog: dict[str, list[Row]] = {key.id: [] for key in dialog_keys}
    for message in messages:
        by_dialog[message.dialog_id].append(rows_of(message))

    async def copy(key: DialogKey) -> None:
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                key.table_name, records=by_dialog[key.id], columns=["seq", "id", "sent_at", "sender_id", "text"]
            )

    started = time.monotonic()
    await asyncio.gather(*(copy(key) for key in dialog_keys))
    return time.monotonic() - started


async def count_rows(pool: asyncpg.Pool, dialog_keys: list[DialogKey]) -> int:
    total = 0
    for key in dialog_keys:
        total += int(await pool.fetchval(f"SELECT count(*) FROM {key.table}"))
    return total


async def bench_storage(
    root: Path, total: int, progress: Callable[[str], None], rounds: int = ROUNDS
) -> dict[str, Any]:
    """``rounds`` rounds, each the worker then COPY on the same rows and emptied tables; the
    round with the median ratio is reported, with every round's ratio beside it."""
    dialogs = min(DIALOGS, max(1, total // 10))
    dialog_keys, messages = make_messages(total, dialogs)
    measured: list[dict[str, Any]] = []
    # As devstack runs them: Valkey with its append-only file, PostgreSQL durable.
    valkey = start_valkey(root / "valkey", log_file=root / "valkey.log")
    try:
        postgres = await asyncio.to_thread(start_postgres, root / "pg", log_file=root / "pg.log")
        try:
            pool = await create_pool(postgres.url, max_size=POOL_SIZE)
            try:
                await prepare_database(pool, dialog_keys)
                for number in range(1, rounds + 1):
                    progress(f"  round {number}/{rounds}")
                    measured.append(await _round(
                        root / f"round-{number}", valkey.url, postgres.url, pool, dialog_keys, messages, progress
                    ))
            finally:
                await pool.close()
        finally:
            postgres.stop()
    finally:
        valkey.stop()
    ratios = [m["worker_rows_per_s"] / m["copy_rows_per_s"] for m in measured]
    median = sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]
    return {
        "rows": total,
        "dialogs": dialogs,
        **measured[median],
        "rounds": measured,
        "ratios": [round(r, 3) for r in ratios],
    }


async def _round(
    root: Path, redis_url: str, database_url: str, pool: asyncpg.Pool,
    dialog_keys: list[DialogKey], messages: list[Message], progress: Callable[[str], None],
) -> dict[str, float]:
    total = len(messages)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        # A fresh stream and no group: the worker's first act is creating it, which starts the clock.
        await redis.flushall()
        await fill_stream(redis, messages, progress)
    finally:
        await redis.aclose()
    worker_s = await time_worker(root, redis_url, database_url, total, progress)
    stored = await count_rows(pool, dialog_keys)
    if stored != total:
        raise RuntimeError(f"storage_worker stored {stored:,} rows, expected {total:,}")
    progress(f"  storage_worker: {total:,} rows in {worker_s:.2f} s")
    await _empty(pool, dialog_keys)
    # Fresh connections, opened before the clock starts: like the worker's, their caches of
    # the dialog tables (and of the foreign key checks' plans) start cold every round.
    ceiling = await create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        copy_s = await time_copy(ceiling, dialog_keys, messages)
    finally:
        await ceiling.close()
    if await count_rows(pool, dialog_keys) != total:
        raise RuntimeError("COPY stored a different number of rows")
    progress(f"  COPY: {total:,} rows in {copy_s:.2f} s")
    await _empty(pool, dialog_keys)
    return {
        "worker_s": round(worker_s, 3),
        "worker_rows_per_s": round(total / worker_s, 1),
        "copy_s": round(copy_s, 3),
        "copy_rows_per_s": round(total / copy_s, 1),
    }


async def _empty(pool: asyncpg.Pool, dialog_keys: list[DialogKey]) -> None:
    for key in dialog_keys:
        await pool.execute(f"TRUNCATE {key.table}")
    await pool.execute("UPDATE dialogs SET last_seq = 0, last_at = created_at")
