"""The storage worker against real Valkey and PostgreSQL: messages put on the stream the way
chat_service does end up in their dialog tables, once, and leave the pending sets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import cast

import asyncpg
import msgspec
import pytest
import redis.asyncio

from chatkit import keys
from chatkit.db import dialog_table_ddl
from chatkit.dialogs import DialogKey
from chatkit.settings import Settings
from storage_worker import service as storage_service
from storage_worker.service import serve
from tests.support import layout
from tests.support.db import rows
from tests.support.polling import wait_until
from tests.support.stack import running as running_service
from tests.support.stream_messages import encode, message, publish, publish_raw
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def users(db: asyncpg.Connection) -> list[int]:
    """Four users, in a database with the schema applied."""
    await db.execute(resources.files("chatkit").joinpath("schema.sql").read_text())
    return [
        await db.fetchval(
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            f"user{n}", f"user{n}@example.com",
        )
        for n in range(1, 5)
    ]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Settings under which a failing entry is retried and dead-lettered within seconds."""
    return settings.with_overrides(claim_idle_ms=200, max_deliveries=2)


def running(
    settings: Settings, instance: str = "storage-test"
) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """A storage worker as ``instance``, its task named so; a worker that crashed re-raises its
    error at the end of the block."""
    return running_service(serve, settings.with_overrides(instance=instance), name=instance)


def drained(rds: redis.asyncio.Redis) -> Callable[[], Awaitable[bool]]:
    """Every entry on the stream has been read by the storage group and acknowledged."""

    async def check() -> bool:
        for name in layout.MESSAGES:
            if not await rds.exists(name):
                # Not created yet: the worker has not started reading.
                return False
            groups = await rds.xinfo_groups(name)
            stream = await rds.xinfo_stream(name)
            group = next((g for g in groups if g["name"] == keys.STORAGE_GROUP.encode()), None)
            if group is None:
                return False
            if not (group["pending"] == 0 and group["last-delivered-id"] == stream["last-generated-id"]):
                return False
        return True

    return check


async def dialog(db: asyncpg.Connection, a: int, b: int) -> DialogKey:
    """A dialog with its table, as chat_service leaves it when the dialog is opened."""
    key = DialogKey.of(a, b)
    await db.execute(dialog_table_ddl(key))
    return key


async def dead_letters(rds: redis.asyncio.Redis) -> list[dict[bytes, bytes]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await rds.xrange(keys.DEAD_LETTERS)  # type: ignore[assignment]
    return [fields for _, fields in entries]


async def assert_all_acknowledged(rds: redis.asyncio.Redis) -> None:
    for name in layout.MESSAGES:
        if await rds.exists(name):
            summary = await rds.xpending(name, keys.STORAGE_GROUP)
            assert summary["pending"] == 0, name


async def test_stores_each_message_with_its_columns(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    sent_at = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    sent = [
        message(key, 1, alice, "hello", sent_at=sent_at),
        message(key, 2, bob, "hi, 👋 \"quoted\" 'text'"),
        message(key, 3, alice, ""),
    ]
    for msg in sent:
        await publish(rds, msg)

    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    stored = await rows(db, key.id)
    assert [(r["seq"], r["id"], r["sender_id"], r["text"]) for r in stored] == [
        (m.seq, uuid.UUID(m.id), m.sender.id, m.text) for m in sent
    ]
    assert stored[0]["sent_at"] == sent_at
    assert all(r["sent_at"] == datetime.fromisoformat(m.sent_at) for r, m in zip(stored, sent, strict=True))
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []


async def test_stored_messages_leave_the_pending_set_and_only_they(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    for seq in (1, 2, 3):
        await publish(rds, message(key, seq, alice))
    # A message accepted but not yet on the stream must stay pending.
    not_yet = encode(message(key, 4, bob))
    await rds.zadd(layout.pending(key.id), {not_yet: 4})
    assert await rds.zcard(layout.pending(key.id)) == 4

    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    assert [r["seq"] for r in await rows(db, key.id)] == [1, 2, 3]
    assert await rds.zrange(layout.pending(key.id), 0, -1) == [not_yet]


async def test_the_same_message_twice_is_stored_once(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    msg = message(key, 1, alice)
    # Twice in one batch...
    await publish(rds, msg)
    await publish(rds, msg)
    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the first two copies are stored")
        # ...and once more after it is in the table.
        await publish(rds, msg)
        await wait_until(drained(rds), tasks=[worker], what="the third copy is handled")

    stored = await rows(db, key.id)
    assert [(r["seq"], r["id"]) for r in stored] == [(1, uuid.UUID(msg.id))]
    assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []


async def test_a_redelivered_batch_stores_its_new_rows_beside_the_stored_ones(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As a worker killed between its commit and its acknowledgement leaves things: some rows
    # of the batch are in the tables already. The plain insert meets a unique violation, and
    # the batch is written again skipping those rows, in every dialog.
    caplog.set_level(logging.INFO, logger="storage_worker.writer")
    alice, bob, carol = users[:3]
    dialogs = [await dialog(db, alice, bob), await dialog(db, alice, carol)]
    sent = {key: [message(key, seq, alice) for seq in range(1, 11)] for key in dialogs}
    first = dialogs[0]
    await db.executemany(
        f"INSERT INTO {first.table} (seq, id, sent_at, sender_id, text) VALUES ($1, $2, $3, $4, $5)",
        [(m.seq, uuid.UUID(m.id), datetime.fromisoformat(m.sent_at), m.sender.id, m.text) for m in sent[first][2:6]],
    )
    for seq in range(10):
        for key in dialogs:
            await publish(rds, sent[key][seq])

    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    for key in dialogs:
        stored = await rows(db, key.id)
        assert [(r["seq"], str(r["id"])) for r in stored] == [(m.seq, m.id) for m in sent[key]]
        assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []
    # The batch went the redelivery way, not the way of a refused one.
    assert "holds rows stored before" in caplog.text
    assert "isolated" not in caplog.text


async def test_one_batch_across_several_dialogs(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    a, b, c, d = users
    dialogs = [await dialog(db, x, y) for x, y in ((a, b), (a, c), (b, c), (c, d))]
    sent: dict[DialogKey, list[str]] = {key: [] for key in dialogs}
    # Interleaved, as concurrent conversations reach the stream.
    for seq in range(1, 51):
        for key in dialogs:
            msg = message(key, seq, key.lo if seq % 2 else key.hi)
            sent[key].append(msg.id)
            await publish(rds, msg)

    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    for key in dialogs:
        stored = await rows(db, key.id)
        assert [r["seq"] for r in stored] == list(range(1, 51))
        assert [str(r["id"]) for r in stored] == sent[key]
        assert [r["sender_id"] for r in stored] == [key.lo if s % 2 else key.hi for s in range(1, 51)]
        assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)


async def test_a_dialog_without_a_table_is_dead_lettered_and_the_others_stored(
    fast: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob, carol = users[:3]
    good = await dialog(db, alice, bob)
    missing = DialogKey.of(alice, carol)
    lost = [message(missing, 1, alice), message(missing, 2, carol)]
    for seq in (1, 2, 3):
        await publish(rds, message(good, seq, alice))
        if seq <= len(lost):
            await publish(rds, lost[seq - 1])

    async def two_dead() -> bool:
        return len(await dead_letters(rds)) == 2

    async with running(fast) as worker:
        await wait_until(two_dead, tasks=[worker], what="both messages of the tableless dialog are dead-lettered")
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    assert [r["seq"] for r in await rows(db, good.id)] == [1, 2, 3]
    dead = await dead_letters(rds)
    assert sorted(d[b"e"] for d in dead) == sorted(encode(m) for m in lost)
    for entry in dead:
        assert entry[b"stream"] == layout.messages(missing.id).encode()
        assert entry[b"deliveries"] == str(fast.max_deliveries).encode()
        assert b"UndefinedTableError" in entry[b"reason"]
        assert missing.table_name.encode() in entry[b"reason"]
    # Not stored, so still pending: history keeps showing them.
    assert await rds.zcard(layout.pending(missing.id)) == 2
    assert await rds.zcard(layout.pending(good.id)) == 0
    await assert_all_acknowledged(rds)


async def test_a_message_of_an_unknown_sender_is_dead_lettered_and_its_dialog_stored(
    fast: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    ghost = message(key, 2, 999)
    await publish(rds, message(key, 1, alice))
    await publish(rds, ghost)
    await publish(rds, message(key, 3, bob))

    async def one_dead() -> bool:
        return len(await dead_letters(rds)) == 1

    async with running(fast) as worker:
        await wait_until(one_dead, tasks=[worker], what="the ghost's message is dead-lettered")
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    assert [r["seq"] for r in await rows(db, key.id)] == [1, 3]
    [dead] = await dead_letters(rds)
    assert dead[b"e"] == encode(ghost)
    assert b"ForeignKeyViolationError" in dead[b"reason"]
    assert await rds.zrange(layout.pending(key.id), 0, -1) == [encode(ghost)]
    await assert_all_acknowledged(rds)


async def test_undecodable_entries_are_dead_lettered_at_once(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    good = message(key, 1, alice)
    not_json = b"{not json"
    bad_dialog = msgspec.json.encode(msgspec.structs.replace(message(key, 2, alice), dialog_id=f"{bob}_{alice}"))
    bad_id = msgspec.json.encode(msgspec.structs.replace(message(key, 3, alice), id="not-a-uuid"))
    bad_time = msgspec.json.encode(msgspec.structs.replace(message(key, 4, alice), sent_at="yesterday"))
    huge_seq = msgspec.json.encode(msgspec.structs.replace(message(key, 5, alice), seq=2**63))
    raw = [not_json, bad_dialog, bad_id, bad_time, huge_seq]
    for data in raw:
        await publish_raw(rds, data)
    await publish(rds, good)

    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    assert [r["seq"] for r in await rows(db, key.id)] == [1]
    dead = await dead_letters(rds)
    assert [d[b"e"] for d in dead] == raw
    assert all(d[b"reason"].startswith(b"undecodable") and d[b"deliveries"] == b"1" for d in dead)
    await assert_all_acknowledged(rds)


@pytest.mark.slow
async def test_two_workers_store_every_message_exactly_once(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    a, b, c, _ = users
    dialogs = [await dialog(db, x, y) for x, y in ((a, b), (a, c), (b, c))]
    small = settings.with_overrides(storage_batch_size=20)
    sent: dict[DialogKey, set[uuid.UUID]] = {key: set() for key in dialogs}

    async with running(small, "storage-a") as one, running(small, "storage-b") as two:
        for seq in range(1, 101):
            for key in dialogs:
                msg = message(key, seq, key.lo)
                sent[key].add(uuid.UUID(msg.id))
                await publish(rds, msg)
        await wait_until(drained(rds), tasks=[one, two], what="the stream is drained")

    for key in dialogs:
        stored = await rows(db, key.id)
        assert [r["seq"] for r in stored] == list(range(1, 101))
        assert {r["id"] for r in stored} == sent[key]
        assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []


@pytest.mark.slow
async def test_stopping_mid_batch_loses_nothing(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    a, b, c, d = users
    dialogs = [await dialog(db, x, y) for x, y in ((a, b), (c, d))]
    # Entries a stopped worker had read but not acknowledged are claimed after claim_idle_ms;
    # enough deliveries that being interrupted never dead-letters one.
    quick = settings.with_overrides(claim_idle_ms=200, max_deliveries=100, storage_batch_size=50)
    for seq in range(1, 301):
        for key in dialogs:
            await publish(rds, message(key, seq, key.hi))

    total = 600

    def more_than(before: int) -> Callable[[], Awaitable[int]]:
        """The rows stored once there are more than ``before`` (or all of them); else 0."""

        async def check() -> int:
            count = sum([int(await db.fetchval(f"SELECT count(*) FROM {key.table}")) for key in dialogs])
            return count if count > before or count == total else 0

        return check

    done = 0
    for round_ in range(6):
        async with running(quick, f"storage-{round_}") as worker:
            # Stopped as soon as it has stored something more: in the middle of what follows
            # (its next batch read, written, or being acknowledged), at a different point each time.
            done = await wait_until(more_than(done), tasks=[worker], what=f"worker {round_} to store more than {done}")
    async with running(quick) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the stream is drained")

    for key in dialogs:
        assert [r["seq"] for r in await rows(db, key.id)] == list(range(1, 301))
        assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []


@pytest.mark.slow
async def test_acknowledged_entries_are_trimmed_and_pending_ones_kept(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage_service, "TRIM_INTERVAL_SECONDS", 0.1)
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    # The dialog's partition of the messages stream: the one this test fills and watches.
    messages = layout.messages(key.id)
    await rds.xgroup_create(messages, keys.STORAGE_GROUP, id="0", mkstream=True)
    # Another consumer read 300 entries and acknowledged all but the last: that one is still
    # pending (never claimed: claim_idle_ms is far off) and must survive every trim.
    for n in range(300):
        await publish_raw(rds, f"handled elsewhere {n}".encode(), messages)
    read = cast(
        list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
        await rds.xreadgroup(keys.STORAGE_GROUP, "stuck", {messages: ">"}, count=300),
    )
    ids = [entry_id for entry_id, _ in read[0][1]]
    await rds.xack(messages, keys.STORAGE_GROUP, *ids[:-1])
    stuck = ids[-1]
    # A second group that has read nothing yet holds everything back, until it catches up.
    await rds.xgroup_create(messages, "later", id="0")
    for seq in range(1, 301):
        await publish(rds, message(key, seq, alice))
    assert await rds.xlen(messages) == 600

    async with running(settings.with_overrides(claim_idle_ms=600_000)) as worker:
        await wait_until(stored_rows(db, key, 300), tasks=[worker], what="the messages are stored")
        # Let the trimmer run twice more (each run ends in one XTRIM) while "later" holds back.
        trims = await xtrim_calls(rds)

        async def trimmed_twice() -> bool:
            return await xtrim_calls(rds) >= trims + 2

        await wait_until(trimmed_twice, tasks=[worker], what="two more trims")
        assert await rds.xlen(messages) == 600, "trimmed entries the other group has not read"
        await rds.xgroup_destroy(messages, "later")

        async def trimmed() -> bool:
            return int(await rds.xlen(messages)) < 600

        await wait_until(trimmed, tasks=[worker], what="acknowledged entries are trimmed")

    # Only whole stream nodes up to the pending entry go (MINID ~): it and all after it stay.
    assert await rds.xrange(messages, stuck, stuck)
    assert len(cast(list[object], await rds.xrange(messages, stuck, "+"))) == 301
    assert (await rds.xpending(messages, keys.STORAGE_GROUP))["pending"] == 1


@pytest.mark.slow
async def test_messages_wait_in_the_stream_through_a_postgres_outage(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    proxy = TcpProxy.for_url(settings.database_url)
    await proxy.start()
    proxied = settings.with_overrides(database_url=proxy.url(settings.database_url))
    sent: list[str] = []

    async def send(seqs: range) -> None:
        for seq in seqs:
            msg = message(key, seq, alice)
            sent.append(msg.id)
            await publish(rds, msg)

    try:
        async with running(proxied) as worker:
            await send(range(1, 51))
            await wait_until(drained(rds), tasks=[worker], what="the first messages are stored")
            # The connections cut, and every new one refused.
            await proxy.stop()
            proxy.refuse()
            await proxy.start()
            await send(range(51, 201))
            # Read, perhaps, but never acknowledged nor dropped from the pending set, through
            # several attempts to reach PostgreSQL again.
            await wait_until(lambda: proxy.refused >= 3, tasks=[worker], what="3 attempts to reach PostgreSQL")
            assert len(await rows(db, key.id)) == 50
            assert not await drained(rds)()
            assert await rds.zcard(layout.pending(key.id)) == 150
            proxy.admit()
            await wait_until(drained(rds), tasks=[worker], what="the backlog is stored once PostgreSQL is back")
    finally:
        await proxy.stop()

    stored = await rows(db, key.id)
    assert [r["seq"] for r in stored] == list(range(1, 201))
    assert [str(r["id"]) for r in stored] == sent
    assert await rds.zcard(layout.pending(key.id)) == 0
    await assert_all_acknowledged(rds)
    assert await dead_letters(rds) == []


async def test_a_broken_pending_set_is_reported_and_the_message_still_acknowledged(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    # Not a sorted set: the cleanup inside the acknowledging transaction fails on its own.
    await rds.set(layout.pending(key.id), "not a sorted set")
    msg = message(key, 1, alice)
    await publish_raw(rds, encode(msg))
    async with running(settings) as worker:
        await wait_until(drained(rds), tasks=[worker], what="the message is stored and acknowledged")
    assert [r["seq"] for r in await rows(db, key.id)] == [1]
    assert "WRONGTYPE" in caplog.text and "acknowledging 1 stored messages" in caplog.text


async def test_after_a_short_read_the_worker_lets_the_next_batch_fill(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int]
) -> None:
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    lingering = settings.with_overrides(storage_linger_ms=3000)
    async with running(lingering) as worker:
        # The first message after a quiet spell is read at once...
        await publish(rds, message(key, 1, alice))
        await wait_until(drained(rds), tasks=[worker], what="the first message is stored")
        # ...and the read that took it was short, so the next ones wait for the linger and
        # then go together: one batch, one transaction (the rows share their xmin).
        for seq in range(2, 6):
            await publish(rds, message(key, seq, alice))
        await wait_until(drained(rds), tasks=[worker], what="the next messages are stored")
    written = await db.fetch(f"SELECT seq, xmin::text AS tx FROM {key.table} ORDER BY seq")
    assert [r["seq"] for r in written] == [1, 2, 3, 4, 5]
    assert len({r["tx"] for r in written[1:]}) == 1, written
    assert written[0]["tx"] != written[1]["tx"], written


async def test_connections_closed_while_idle_are_replaced_without_failing_a_batch(
    settings: Settings, db: asyncpg.Connection, rds: redis.asyncio.Redis, users: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An idle timeout or a server restart closes the lanes' connections between batches;
    # asyncpg then takes them back into its pool, and a lane still holding one must connect
    # again rather than take the failure for a batch PostgreSQL refused.
    alice, bob = users[:2]
    key = await dialog(db, alice, bob)
    async with running(settings) as worker:
        await publish(rds, message(key, 1, alice))
        await wait_until(drained(rds), tasks=[worker], what="the first message is stored")
        terminated = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        assert terminated >= 1

        async def all_gone() -> bool:
            return not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )

        await wait_until(all_gone, tasks=[worker], what="the worker's connections to be gone")
        for seq in range(2, 6):
            await publish(rds, message(key, seq, alice))
        await wait_until(drained(rds), tasks=[worker], what="the next messages are stored")

    assert [r["seq"] for r in await rows(db, key.id)] == [1, 2, 3, 4, 5]
    assert "not stored" not in caplog.text
    assert "unexpected failure" not in caplog.text


async def xtrim_calls(rds: redis.asyncio.Redis) -> int:
    """XTRIM commands the server has run, scripts' included (INFO commandstats)."""
    stats = await rds.info("commandstats")
    return int(stats.get("cmdstat_xtrim", {}).get("calls", 0))


def stored_rows(db: asyncpg.Connection, key: DialogKey, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return int(await db.fetchval(f"SELECT count(*) FROM {key.table}")) == count

    return check


@pytest.mark.parametrize(
    ("seqs", "runs"),
    [
        ([], []),
        ([7], [(7, 7)]),
        ([3, 4, 5], [(3, 5)]),
        ([5, 3, 4], [(3, 5)]),
        ([1, 2, 4, 4, 5, 9], [(1, 2), (4, 5), (9, 9)]),
    ],
)
def test_stored_seqs_become_runs_that_never_span_a_gap(seqs: list[int], runs: list[tuple[int, int]]) -> None:
    assert storage_service.seq_runs(seqs) == runs
