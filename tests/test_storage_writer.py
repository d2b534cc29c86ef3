"""The storage writer and its SQL function against a real PostgreSQL: a batch's senders are
checked once, with the foreign key's guarantee, and the row triggers are off only inside the
batch's transaction; a role that may not turn them off still stores, checking row by row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest

from chatkit.db import legacy_dialog_table_ddl
from chatkit.dialogs import DialogKey
from chatkit.settings import Settings
from chatkit.streams import Entry
from storage_worker import sql
from storage_worker.batch import DialogBatch, group
from storage_worker.held import may_turn_row_triggers_off
from storage_worker.writer import Writer, arguments, is_outage
from tests.support.polling import wait_until
from tests.support.stream_messages import encode, message
from tests.support.tcp_proxy import TcpProxy

GHOST = 999


@pytest.fixture
async def key(db: asyncpg.Connection) -> DialogKey:
    """A dialog of users 1 and 2, its table in the layout older databases hold (with a foreign
    key to users), and the storage functions."""
    await db.execute(resources.files("chatkit").joinpath("schema.sql").read_text())
    for n in (1, 2):
        await db.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
            n, f"user{n}", f"user{n}@example.com",
        )
    dialog = DialogKey.of(1, 2)
    await db.execute(legacy_dialog_table_ddl(dialog))
    await sql.install(db)
    return dialog


def batches(key: DialogKey, senders: list[int]) -> list[DialogBatch]:
    entries = [
        Entry(f"{seq}-0".encode(), encode(message(key, seq, sender))) for seq, sender in enumerate(senders, 1)
    ]
    grouped = group(entries)
    assert grouped.bad == []
    return grouped.batches


async def stored(db: asyncpg.Connection, key: DialogKey) -> list[tuple[int, int]]:
    return [(r["seq"], r["sender_id"]) for r in await db.fetch(f"SELECT seq, sender_id FROM {key.table} ORDER BY seq")]


async def test_senders_are_checked_once_and_row_triggers_come_back_after_the_batch(
    db: asyncpg.Connection, key: DialogKey
) -> None:
    assert await may_turn_row_triggers_off(db)
    await db.fetch(sql.WRITE_BATCH, *arguments(batches(key, [1, 2, 1])), False, False, [1, 2], True)
    assert await stored(db, key) == [(1, 1), (2, 2), (3, 1)]
    assert await db.fetchval("SHOW session_replication_role") == "origin"
    # The foreign key is still enforced for this session's next statements.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute(
            f"INSERT INTO {key.table} (seq, id, sent_at, sender_id, text) VALUES (9, $1, now(), $2, 'x')",
            uuid.uuid4(), GHOST,
        )


async def test_a_missing_sender_fails_the_batch_as_the_foreign_key_would(
    db: asyncpg.Connection, key: DialogKey
) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="1 of the batch's 2 senders"):
        await db.fetch(sql.WRITE_BATCH, *arguments(batches(key, [1, GHOST])), False, False, [1, GHOST], True)
    assert await stored(db, key) == []


@pytest.fixture
async def unprivileged(db: asyncpg.Connection, key: DialogKey) -> AsyncIterator[str]:
    """A role that may write the dialog's table, and may not set session_replication_role."""
    role = f"writer_{uuid.uuid4().hex[:12]}"
    await db.execute(f'CREATE ROLE "{role}" LOGIN')
    await db.execute(f'GRANT INSERT, SELECT ON {key.table} TO "{role}"')
    # The batch's sender check locks users rows (FOR KEY SHARE needs an UPDATE grant), and
    # each batch moves its dialogs' rows in `dialogs`.
    await db.execute(f'GRANT SELECT, UPDATE (chats) ON users TO "{role}"')
    await db.execute(f'GRANT SELECT, UPDATE ON dialogs TO "{role}"')
    try:
        yield role
    finally:
        await db.execute(f'DROP OWNED BY "{role}"')
        await db.execute(f'DROP ROLE "{role}"')


async def test_a_role_that_may_not_turn_row_triggers_off_stores_checking_row_by_row(
    settings: Settings, db: asyncpg.Connection, key: DialogKey, unprivileged: str
) -> None:
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=1, server_settings={"role": unprivileged}
    )
    try:
        async with pool.acquire() as conn:
            assert not await may_turn_row_triggers_off(conn)
        writer = Writer(pool)
        try:
            [result] = await writer.write(batches(key, [1, GHOST, 2]))
        finally:
            await writer.drop()
    finally:
        await pool.close()
    assert [item.row.seq for item in result.stored] == [1, 3]
    [(item, reason)] = result.failed
    assert item.row.seq == 2
    assert reason.startswith("ForeignKeyViolationError")
    assert await stored(db, key) == [(1, 1), (3, 2)]


async def test_a_connection_lost_under_a_batch_is_an_outage_and_the_next_batch_reconnects(
    settings: Settings, db: asyncpg.Connection, key: DialogKey
) -> None:
    # A trigger that fires even with row triggers off holds the batch while the link to the
    # server goes, as in a restart or a failover. asyncpg takes the dead connection back into
    # its pool before the writer's termination listener runs; dropping it then must not fail.
    await db.execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$"
    )
    await db.execute(f"CREATE TRIGGER slow AFTER INSERT ON {key.table} FOR EACH STATEMENT EXECUTE FUNCTION slow()")
    await db.execute(f"ALTER TABLE {key.table} ENABLE ALWAYS TRIGGER slow")
    proxy = TcpProxy.for_url(settings.database_url)
    await proxy.start()
    pool = await asyncpg.create_pool(proxy.url(settings.database_url), min_size=1, max_size=2)
    writer = Writer(pool)
    try:
        writing = asyncio.create_task(writer.write(batches(key, [1, 2])))

        async def held_in_the_trigger() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"))

        await wait_until(held_in_the_trigger, what="the batch to be held in the slow trigger")
        await proxy.stop()
        with pytest.raises(Exception) as raised:
            await writing
        assert is_outage(raised.value), raised.value
        await db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
        await db.execute(f"DROP TRIGGER slow ON {key.table}")
        await proxy.start()
        [result] = await writer.write(batches(key, [1, 2]))
        assert result.failed == [] and result.inserted == 2
    finally:
        await writer.drop()
        await pool.close()
        await proxy.stop()
    assert await stored(db, key) == [(1, 1), (2, 2)]
