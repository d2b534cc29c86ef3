"""PostgreSQL connections are replaced before their caches grow without bound: a storage lane's
after it touched N dialog tables or lived its life, between batches, so no batch is lost or
written twice; chat_service's pool after N statements or its life (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from chatkit.db import apply_schema, create_pool, dialog_table_ddl, expire_connections_every
from chatkit.dialogs import DialogKey
from chatkit.settings import Settings
from chatkit.streams import Entry
from chatkit.wire import Message, UserRef
from storage_worker import sql
from storage_worker.batch import DialogBatch, group
from storage_worker.writer import Writer

_encode = msgspec.json.Encoder().encode
DIALOGS = [DialogKey(1, n) for n in range(2, 8)]
_entries = iter(range(1, 10**6))


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """Users 1..7, a (current-layout) table for each dialog of user 1, the storage functions."""
    pool = await create_pool(settings.database_url, min_size=0, max_size=3)
    try:
        await apply_schema(pool)
        await pool.executemany(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
            [(n, f"user{n}", f"user{n}@example.com") for n in range(1, 8)],
        )
        for key in DIALOGS:
            await pool.execute(dialog_table_ddl(key))
            await pool.execute("INSERT INTO dialogs (lo, hi) VALUES ($1, $2)", key.lo, key.hi)
        async with pool.acquire() as conn:
            await sql.install(conn)
        yield pool
    finally:
        await pool.close()


def batch(keys: list[DialogKey], seq: int) -> list[DialogBatch]:
    """Message `seq` of each dialog, as stream entries decoded by the storage worker."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entries = [
        Entry(f"{next(_entries)}-0".encode(), _encode(Message(
            id=str(uuid.uuid4()), dialog_id=key.id, seq=seq, sender=UserRef(id=key.lo, username="user1"),
            text=f"{seq} in {key.id}", sent_at=now,
        )))
        for key in keys
    ]
    grouped = group(entries)
    assert grouped.bad == []
    return grouped.batches


async def stored(pool: asyncpg.Pool) -> dict[str, list[int]]:
    return {
        key.id: [row["seq"] for row in await pool.fetch(f"SELECT seq FROM {key.table} ORDER BY seq")]
        for key in DIALOGS
    }


async def backend_gone(pool: asyncpg.Pool, pid: int) -> None:
    """Wait until PostgreSQL's backend `pid` has ended (its caches freed with it)."""
    for _ in range(400):
        if not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"expected backend {pid} to end within 20 s")


@pytest.mark.timeout(60)
async def test_a_lane_replaces_its_connection_after_n_tables_between_batches(pool: asyncpg.Pool) -> None:
    writer = Writer(pool, max_tables=3, life_seconds=3600)
    try:
        first = (await writer.held.get()).get_server_pid()
        for result in await writer.write(batch(DIALOGS[:2], 1)):
            assert result.inserted == 1
        assert (await writer.held.get()).get_server_pid() == first, "replaced after 2 of 3 tables"
        # This batch takes the connection to 4 tables: written whole on it, then replaced.
        for result in await writer.write(batch(DIALOGS[2:4], 1)):
            assert result.inserted == 1
        assert writer.held.recycled == 0
        second = (await writer.held.get()).get_server_pid()
        assert second != first
        assert writer.held.recycled == 1
        assert writer.held.tables == 0
        await backend_gone(pool, first)
        # The next batch goes through the new connection, once.
        results = await writer.write(batch(DIALOGS, 2))
        assert [r.inserted for r in results] == [1] * len(DIALOGS)
        assert (await writer.held.get()).get_server_pid() != second, "6 tables: replaced again"
    finally:
        await writer.drop()
    assert await stored(pool) == {
        key.id: ([1, 2] if n < 4 else [2]) for n, key in enumerate(DIALOGS)
    }


@pytest.mark.timeout(60)
async def test_a_redelivered_batch_after_a_replacement_is_stored_once(pool: asyncpg.Pool) -> None:
    writer = Writer(pool, max_tables=1, life_seconds=3600)
    try:
        first = (await writer.held.get()).get_server_pid()
        await writer.write(batch(DIALOGS[:3], 1))
        # The same messages again (a claim after a crash, say), on a new connection: skipped by seq.
        again = await writer.write(batch(DIALOGS[:3], 1))
        assert (await writer.held.get()).get_server_pid() != first
    finally:
        await writer.drop()
    assert [r.inserted for r in again] == [0, 0, 0]
    assert [len(r.stored) for r in again] == [1, 1, 1]
    assert await stored(pool) == {key.id: ([1] if n < 3 else []) for n, key in enumerate(DIALOGS)}


@pytest.mark.timeout(60)
async def test_a_lane_replaces_its_connection_after_its_life(pool: asyncpg.Pool) -> None:
    writer = Writer(pool, max_tables=10_000, life_seconds=0.2)
    try:
        first = (await writer.held.get()).get_server_pid()
        await writer.write(batch(DIALOGS[:1], 1))
        # Within its life, the connection stays; after it, the next batch gets a new one.
        await asyncio.sleep(0.3)
        await writer.write(batch(DIALOGS[:1], 2))
        assert writer.held.recycled == 1
        assert (await writer.held.get()).get_server_pid() != first
    finally:
        await writer.drop()
    assert (await stored(pool))[DIALOGS[0].id] == [1, 2]


@pytest.mark.timeout(60)
async def test_a_service_pool_replaces_a_connection_after_n_statements(settings: Settings) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=1, max_queries=3)
    try:
        pids = [await pool.fetchval("SELECT pg_backend_pid()") for _ in range(7)]
    finally:
        await pool.close()
    # At most three statements per connection (asyncpg counts its own set-up statements too).
    runs = [len(list(run)) for _, run in itertools.groupby(pids)]
    assert max(runs) <= 3, f"expected no connection to serve more than 3 statements, got runs {runs}"
    assert len(set(pids)) >= 3, f"expected at least 3 connections for 7 statements, got {pids}"


@pytest.mark.timeout(60)
async def test_a_service_pool_replaces_its_connections_after_their_life(settings: Settings) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    expiring = asyncio.create_task(expire_connections_every(pool, 0.1))
    try:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        for _ in range(400):
            if await pool.fetchval("SELECT pg_backend_pid()") != first:
                return
            await asyncio.sleep(0.05)
        pytest.fail("expected the connection to be replaced within 20 s")
    finally:
        expiring.cancel()
        await pool.close()
