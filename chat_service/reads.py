"""Read marks: each member's, on the dialog's row of `dialogs` (PostgreSQL, so they survive
restarts), only ever moved forward and never past the dialog's last seq."""

from __future__ import annotations

import asyncpg

from chat_service import store
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.errors import RequestError
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient


def _column(key: DialogKey, user_id: int) -> str:
    # One of two fixed names: nothing from a request reaches the SQL text.
    return "lo_read" if user_id == key.lo else "hi_read"


async def last_seq(pool: asyncpg.Pool, redis: RedisClient, partitions: Partitions, key: DialogKey) -> int:
    """The dialog's last seq given out (stored or not); not_member if there is no such dialog."""
    counter = await redis.call("GET", keys.dialog_seq(partitions.dialog_tag(key), key.id))
    if counter is not None:
        return int(counter)
    # Redis does not know the dialog (never sent to since Redis lost its data, or no dialog).
    if not await store.dialog_exists(pool, key):
        raise RequestError("not_member", f"no dialog {key.id!r} of yours")
    return await store.last_stored_seq(pool, key)


async def mark_read(
    pool: asyncpg.Pool, redis: RedisClient, partitions: Partitions, key: DialogKey, user_id: int, seq: int,
) -> tuple[int, bool]:
    """Move ``user_id``'s read mark to ``seq``: (the mark now, whether it moved)."""
    last = await last_seq(pool, redis, partitions, key)
    if seq > last:
        raise RequestError("invalid", f"seq: expected at most {last} (the dialog's last seq), got {seq}")
    column = _column(key, user_id)
    moved = await pool.fetchval(
        f"UPDATE dialogs SET {column} = $3 WHERE lo = $1 AND hi = $2 AND {column} < $3 RETURNING {column}",
        key.lo, key.hi, seq,
    )
    if moved is not None:
        return int(moved), True
    current = await pool.fetchval(f"SELECT {column} FROM dialogs WHERE lo = $1 AND hi = $2", key.lo, key.hi)
    if current is None:
        raise RequestError("not_member", f"no dialog {key.id!r} of yours")
    return int(current), False


async def marks(pool: asyncpg.Pool, dialogs: list[DialogKey]) -> dict[str, dict[str, int]]:
    """dialog id -> {user id (a string): read mark} for both members, in one query."""
    if not dialogs:
        return {}
    rows = await pool.fetch(
        "SELECT d.lo, d.hi, d.lo_read, d.hi_read FROM dialogs d "
        "JOIN unnest($1::int[], $2::int[]) AS w(lo, hi) ON d.lo = w.lo AND d.hi = w.hi",
        [k.lo for k in dialogs], [k.hi for k in dialogs],
    )
    return {
        DialogKey(row["lo"], row["hi"]).id: {str(row["lo"]): row["lo_read"], str(row["hi"]): row["hi_read"]}
        for row in rows
    }
