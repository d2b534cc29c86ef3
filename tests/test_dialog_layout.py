"""The table-per-dialog layout on a real PostgreSQL: a dialog table's shape (one index, no
foreign key), concurrent opens making one dialog each, tables of the older layout still written
and read after the schema moves on, a deleted user's rows deleted as the old key's cascade did,
and the dialog list by activity read from `dialogs`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources

import asyncpg
import msgspec
import pytest

from chat_service import store
from chat_service.dialog_list import dialogs_by_activity
from chatkit.db import apply_schema, create_pool, legacy_dialog_table_ddl
from chatkit.dialogs import DialogKey
from chatkit.settings import Settings
from chatkit.streams import Entry
from chatkit.wire import Message, UserRef
from storage_worker import sql
from storage_worker.batch import group
from storage_worker.writer import StoreResult, Writer

_encode = msgspec.json.Encoder().encode
_entries = iter(range(1, 10**6))
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# The schema as databases made before `dialogs` hold it (chatkit/schema.sql at commit f10dca2).
OLD_SCHEMA = """
CREATE TABLE users (
    id serial PRIMARY KEY, username varchar(255) NOT NULL UNIQUE, email varchar(255) NOT NULL UNIQUE,
    password_hash text NOT NULL, chats integer[] NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_ci ON users (lower(username));
CREATE UNIQUE INDEX users_email_ci ON users (lower(email));
"""


async def add_users(pool: asyncpg.Pool, count: int) -> list[UserRef]:
    return [
        UserRef(id=await pool.fetchval(
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            f"user{n}", f"user{n}@example.com",
        ), username=f"user{n}")
        for n in range(1, count + 1)
    ]


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, min_size=0, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


async def schema(pool: asyncpg.Pool) -> None:
    await apply_schema(pool)
    async with pool.acquire() as conn:
        await sql.install(conn)


async def write(pool: asyncpg.Pool, messages: list[tuple[DialogKey, int, int, datetime]]) -> list[StoreResult]:
    """Store (dialog, seq, sender, sent_at) rows as the storage worker does, in one batch."""
    entries = [
        Entry(f"{next(_entries)}-0".encode(), _encode(Message(
            id=str(uuid.uuid4()), dialog_id=key.id, seq=seq, sender=UserRef(id=sender, username=f"user{sender}"),
            text=f"{seq} in {key.id}", sent_at=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )))
        for key, seq, sender, at in messages
    ]
    grouped = group(entries)
    assert grouped.bad == []
    writer = Writer(pool)
    try:
        return await writer.write(grouped.batches)
    finally:
        await writer.drop()


async def test_a_new_dialog_table_has_one_packed_index_and_no_foreign_key(pool: asyncpg.Pool) -> None:
    await schema(pool)
    alice, bob = await add_users(pool, 2)
    opened = await store.open_dialog(pool, alice.id, bob)
    table = opened.key.table_name
    indexes = await pool.fetch(
        "SELECT i.relname, x.indisprimary, x.indisunique, pg_get_indexdef(x.indexrelid) AS def, i.reloptions"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass", table,
    )
    assert [(r["relname"], r["indisprimary"]) for r in indexes] == [(f"{table}_pkey", True)]
    assert "(seq)" in indexes[0]["def"]
    assert indexes[0]["reloptions"] == ["fillfactor=100"]
    # (PostgreSQL 18 also lists NOT NULL constraints here, as 'n'.)
    constraints = await pool.fetch(
        "SELECT contype FROM pg_constraint WHERE conrelid = $1::regclass AND contype <> 'n'", table)
    assert [r["contype"] for r in constraints] == [b"p"], "expected only the primary key, no foreign key"
    assert await pool.fetchval("SELECT count(*) FROM dialogs WHERE lo = $1 AND hi = $2", *sorted((alice.id, bob.id)))


@pytest.mark.timeout(120)
async def test_concurrent_opens_make_one_dialog_each(pool: asyncpg.Pool) -> None:
    await schema(pool)
    users = await add_users(pool, 12)
    by_id = {user.id: user for user in users}
    # Every pair of 12 users, each opened from both sides at once: 66 dialogs, 132 opens,
    # every user in 11 of them (opens sharing users at once, in all orders).
    pairs = [(a, b) for a in users for b in users if a.id < b.id]
    opens = [store.open_dialog(pool, a.id, b) for a, b in pairs] + [store.open_dialog(pool, b.id, a) for a, b in pairs]
    results = await asyncio.gather(*opens)
    created = [r.key for r in results if r.created]
    assert sorted(created) == sorted(DialogKey.of(a.id, b.id) for a, b in pairs)
    assert await pool.fetchval("SELECT count(*) FROM dialogs") == len(pairs)
    for user in users:
        chats = await pool.fetchval("SELECT chats FROM users WHERE id = $1", user.id)
        assert sorted(chats) == sorted(u for u in by_id if u != user.id)
        peers = await store.list_dialogs(pool, user.id)
        assert [p.id for p in peers] == sorted(u for u in by_id if u != user.id)
    tables = await pool.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'chat\\_%' AND relkind = 'r'")
    assert tables == len(pairs)


@pytest.mark.timeout(120)
async def test_old_layout_tables_are_still_written_and_read(settings: Settings, pool: asyncpg.Pool) -> None:
    # A database as the older code left it: no `dialogs`, a dialog known through users.chats,
    # its table with a unique id index and a foreign key, one message stored.
    await pool.execute(OLD_SCHEMA)
    alice, bob, carol = await add_users(pool, 3)
    old = DialogKey.of(alice.id, bob.id)
    await pool.execute(legacy_dialog_table_ddl(old))
    await pool.execute("UPDATE users SET chats = $2 WHERE id = $1", alice.id, [bob.id])
    await pool.execute("UPDATE users SET chats = $2 WHERE id = $1", bob.id, [alice.id])
    await pool.execute(
        f"INSERT INTO {old.table} (seq, id, sent_at, sender_id, text) VALUES (1, $1, $2, $3, 'before')",
        uuid.uuid4(), BASE, alice.id,
    )
    # The services start on it: the schema moves on, the dialog is known to `dialogs`.
    await schema(pool)
    assert await store.dialog_exists(pool, old)
    again = await store.open_dialog(pool, bob.id, alice)
    assert not again.created
    assert [p.id for p in await store.list_dialogs(pool, alice.id)] == [bob.id]
    # Written by the storage worker (a redelivered seq 1 skipped, seq 2 added) beside a new dialog.
    new = (await store.open_dialog(pool, carol.id, alice)).key
    soon = datetime.now(UTC) + timedelta(minutes=1)
    results = await write(pool, [
        (old, 1, alice.id, BASE), (old, 2, bob.id, soon + timedelta(seconds=2)),
        (new, 1, carol.id, soon + timedelta(seconds=1)),
    ])
    assert [(r.key, r.inserted, len(r.failed)) for r in results] == [(old, 1, 0), (new, 1, 0)]
    # Read back by history.
    history = await store.stored_messages(pool, old, after=0, before=2**62, limit=10, newest=True)
    assert [(m.seq, m.sender.id, m.text) for m in history] == [(1, alice.id, "before"), (2, bob.id, "2 in " + old.id)]
    # The old table kept its shape, and its foreign key still refuses a missing sender.
    assert await pool.fetchval(
        "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass", old.table_name) == 2
    [refused] = await write(pool, [(old, 3, 999, BASE)])
    assert refused.failed and refused.failed[0][1].startswith("ForeignKeyViolationError")
    # The dialog list sees both, the old dialog most recent.
    listed = await dialogs_by_activity(pool, alice.id, limit=10)
    assert [(d.key, d.last_seq) for d in listed] == [(old, 2), (new, 1)]


async def test_a_missing_sender_is_refused_in_a_new_table_as_the_key_would(pool: asyncpg.Pool) -> None:
    await schema(pool)
    alice, bob = await add_users(pool, 2)
    key = (await store.open_dialog(pool, alice.id, bob)).key
    [result] = await write(pool, [(key, 1, alice.id, BASE), (key, 2, 999, BASE), (key, 3, bob.id, BASE)])
    assert [item.row.seq for item in result.stored] == [1, 3]
    [(item, reason)] = result.failed
    assert item.row.seq == 2
    assert reason.startswith("ForeignKeyViolationError")
    assert await pool.fetchval("SELECT last_seq FROM dialogs WHERE lo = $1 AND hi = $2", key.lo, key.hi) == 3


async def test_deleting_a_user_deletes_their_messages_as_the_old_cascade_did(pool: asyncpg.Pool) -> None:
    await schema(pool)
    alice, bob = await add_users(pool, 2)
    key = (await store.open_dialog(pool, alice.id, bob)).key
    await write(pool, [(key, 1, alice.id, BASE), (key, 2, bob.id, BASE), (key, 3, alice.id, BASE)])
    await pool.execute("DELETE FROM users WHERE id = $1", alice.id)
    assert [r["seq"] for r in await pool.fetch(f"SELECT seq FROM {key.table} ORDER BY seq")] == [2]


@pytest.mark.timeout(120)
async def test_dialogs_by_activity_orders_pages_and_follows_stored_batches(pool: asyncpg.Pool) -> None:
    await schema(pool)
    hub, *others = await add_users(pool, 7)
    keys = [(await store.open_dialog(pool, hub.id, other)).key for other in others]
    # Messages in dialogs 3, 0 and 5 (in that order of time); the rest stay empty.
    soon = datetime.now(UTC) + timedelta(minutes=1)
    await write(pool, [
        (keys[3], 1, hub.id, soon), (keys[0], 1, hub.id, soon + timedelta(seconds=1)),
        (keys[0], 2, others[0].id, soon + timedelta(seconds=2)), (keys[5], 1, hub.id, soon + timedelta(seconds=3)),
    ])
    full = await dialogs_by_activity(pool, hub.id, limit=100)
    # Then the empty dialogs, by creation time, newest first (they were opened in order).
    empty = [k for n, k in enumerate(keys) if n not in (0, 3, 5)]
    assert [d.key for d in full] == [keys[5], keys[0], keys[3], *reversed(empty)]
    assert [d.last_seq for d in full] == [1, 2, 1, 0, 0, 0]
    assert all(d.last_at == d.created_at for d in full[3:])
    assert all(d.peer.id == d.key.peer_of(hub.id) for d in full)
    # Pages of 2 with the cursor: every dialog once, in the same order.
    paged: list[DialogKey] = []
    page = await dialogs_by_activity(pool, hub.id, limit=2)
    while page:
        paged += [d.key for d in page]
        page = await dialogs_by_activity(pool, hub.id, limit=2, after=page[-1].cursor)
    assert paged == [d.key for d in full]
    # A later message moves its dialog to the front; an older batch delivered late does not
    # move last_seq back.
    await write(pool, [(keys[3], 2, hub.id, soon + timedelta(hours=1))])
    await write(pool, [(keys[3], 1, hub.id, soon)])
    [top] = await dialogs_by_activity(pool, hub.id, limit=1)
    assert (top.key, top.last_seq) == (keys[3], 2)
    # A peer sees the same dialog from the other side.
    [seen] = await dialogs_by_activity(pool, others[3].id, limit=5)
    assert (seen.key, seen.peer.id, seen.last_seq) == (keys[3], hub.id, 2)


async def test_the_schema_applies_twice(pool: asyncpg.Pool) -> None:
    text = resources.files("chatkit").joinpath("schema.sql").read_text()
    await pool.execute(text)
    await pool.execute(text)
    assert await pool.fetchval("SELECT to_regclass('dialogs') IS NOT NULL")
