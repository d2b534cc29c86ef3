"""A user's dialogs ordered by activity, read from the one `dialogs` table (never from the N
dialog tables): the newest stored message first, a dialog without messages by its creation.

The storage worker keeps each row's ``last_seq`` and ``last_at`` in the same transaction as the
batch it stores (storage_worker.sql), so a listing never shows a message the table lacks;
messages sent but not stored yet (seconds at most) are not counted. Pages are walked with a
cursor, the (last_at, peer id) of the last dialog of the previous page: stable while dialogs
move, since a dialog that becomes active moves to the front, before any cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chatkit.dialogs import DialogKey
from chatkit.wire import UserRef


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the next page holds dialogs strictly older than this."""

    last_at: datetime
    peer_id: int


@dataclass(frozen=True, slots=True)
class DialogActivity:
    key: DialogKey
    peer: UserRef
    created_at: datetime
    # The highest stored seq (0 while nothing is stored) and its time (creation time till then).
    last_seq: int
    last_at: datetime

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.last_at, self.peer.id)


# Each side of the pair has its index (lo or hi, last_at DESC, peer DESC): both halves are
# index scans that stop after `limit` rows, whatever the user's number of dialogs.
_BY_ACTIVITY = """
SELECT d.lo, d.hi, d.created_at, d.last_seq, d.last_at, u.id AS peer_id, u.username
FROM (
    (SELECT lo, hi, created_at, last_seq, last_at, hi AS peer FROM dialogs
     WHERE lo = $1 AND (last_at, hi) < ($2, $3) ORDER BY last_at DESC, hi DESC LIMIT $4)
    UNION ALL
    (SELECT lo, hi, created_at, last_seq, last_at, lo AS peer FROM dialogs
     WHERE hi = $1 AND (last_at, lo) < ($2, $3) ORDER BY last_at DESC, lo DESC LIMIT $4)
) d JOIN users u ON u.id = d.peer
ORDER BY d.last_at DESC, d.peer DESC
LIMIT $4
"""

# Beyond any real time and user id: the first page.
_TOP = Cursor(datetime.fromisoformat("9999-12-31T00:00:00+00:00"), 2**31 - 1)


async def dialogs_by_activity(
    pool: asyncpg.Pool, me: int, *, limit: int, after: Cursor | None = None
) -> list[DialogActivity]:
    """`me`'s dialogs, most recently active first: at most `limit`, older than `after` (the
    cursor of the last dialog of the previous page) when given."""
    if limit <= 0:
        raise ValueError(f"limit: expected a positive number, got {limit}")
    start = after or _TOP
    rows = await pool.fetch(_BY_ACTIVITY, me, start.last_at, start.peer_id, limit)
    return [
        DialogActivity(
            key=DialogKey(row["lo"], row["hi"]),
            peer=UserRef(id=row["peer_id"], username=row["username"]),
            created_at=row["created_at"],
            last_seq=row["last_seq"],
            last_at=row["last_at"],
        )
        for row in rows
    ]
