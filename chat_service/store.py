"""chat_service's SQL: dialogs through `users.chats`, and reading the per-dialog tables.
Table names come only from DialogKey (two integers) and are quoted there."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from chatkit.db import dialog_table_ddl, lock_dialog
from chatkit.dialogs import DialogKey
from chatkit.wire import Message, UserRef, wire_time


@dataclass(frozen=True, slots=True)
class OpenedDialog:
    key: DialogKey
    peer: UserRef
    created: bool


async def find_user(pool: asyncpg.Pool, username: str) -> UserRef | None:
    row = await pool.fetchrow("SELECT id, username FROM users WHERE lower(username) = lower($1)", username)
    return None if row is None else UserRef(id=row["id"], username=row["username"])


async def open_dialog(pool: asyncpg.Pool, me: int, peer: UserRef) -> OpenedDialog:
    """Find the dialog of `me` and `peer`, or create it. Under a per-dialog advisory lock, so
    opens from both sides at once give one dialog and exactly one `created`."""
    key = DialogKey.of(me, peer.id)
    async with pool.acquire() as conn, conn.transaction():
        await lock_dialog(conn, key)
        if await conn.fetchval(_DIALOG_EXISTS, key.lo, key.hi):
            return OpenedDialog(key, peer, created=False)
        # The table first: it locks nothing but its own new catalogue rows (no foreign key, see
        # chatkit.db), so the users rows below are held only from their update to the commit.
        await conn.execute(dialog_table_ddl(key))
        await conn.execute("INSERT INTO dialogs (lo, hi) VALUES ($1, $2)", key.lo, key.hi)
        # The original design's append, guarded so a repeated open cannot add the id twice;
        # lo's row first, so that opens sharing users always lock them in one order.
        append = (
            "UPDATE users SET chats[cardinality(chats) + 1] = $2 "
            "WHERE id = $1 AND NOT ($2 = ANY(chats))"
        )
        await conn.execute(append, key.lo, key.hi)
        await conn.execute(append, key.hi, key.lo)
        return OpenedDialog(key, peer, created=True)


# `dialogs` holds a row for every dialog (schema.sql fills it in for older databases).
_DIALOG_EXISTS = "SELECT EXISTS (SELECT 1 FROM dialogs WHERE lo = $1 AND hi = $2)"


async def dialog_exists(pool: asyncpg.Pool, key: DialogKey) -> bool:
    return bool(await pool.fetchval(_DIALOG_EXISTS, key.lo, key.hi))


async def list_dialogs(pool: asyncpg.Pool, me: int) -> list[UserRef]:
    rows = await pool.fetch(
        "SELECT u.id, u.username FROM ("
        " SELECT hi AS peer FROM dialogs WHERE lo = $1 UNION ALL SELECT lo FROM dialogs WHERE hi = $1"
        ") d JOIN users u ON u.id = d.peer ORDER BY u.id",
        me,
    )
    return [UserRef(id=row["id"], username=row["username"]) for row in rows]


async def last_stored_seq(pool: asyncpg.Pool, key: DialogKey) -> int:
    seq = await pool.fetchval(f"SELECT coalesce(max(seq), 0) FROM {key.table}")
    return int(seq)


async def stored_messages(
    pool: asyncpg.Pool, key: DialogKey, *, after: int, before: int, limit: int, newest: bool,
) -> list[Message]:
    """Stored messages with after < seq < before: the `limit` newest (a history page) or the
    `limit` oldest (catching up), always returned oldest first."""
    order = "DESC" if newest else "ASC"
    rows = await pool.fetch(
        f"SELECT m.seq, m.id, m.sent_at, m.sender_id, u.username, m.text FROM {key.table} m "
        f"JOIN users u ON u.id = m.sender_id WHERE m.seq > $1 AND m.seq < $2 "
        f"ORDER BY m.seq {order} LIMIT $3",
        after, before, limit,
    )
    messages = [
        Message(
            id=str(row["id"]), dialog_id=key.id, seq=row["seq"],
            sender=UserRef(id=row["sender_id"], username=row["username"]), text=row["text"],
            sent_at=wire_time(row["sent_at"]),
        )
        for row in rows
    ]
    messages.sort(key=lambda m: m.seq)
    return messages
