"""Writing one dialog's batch into its table, and telling entry failures from outages.

A batch is one INSERT statement, so it commits (or not) on its own, as an implicit
transaction, in one round trip: no BEGIN/COMMIT exchange, and one dialog's failure never
holds up another's. ``ON CONFLICT DO NOTHING`` makes a redelivered message a no-op, which
turns the stream's at-least-once delivery into effectively-once storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

from chatkit.db import CONNECTION_ERRORS
from chatkit.dialogs import DialogKey
from storage_worker.batch import DialogBatch, Item

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO {table} (seq, id, sent_at, sender_id, text)"
    " SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[])"
    " ON CONFLICT DO NOTHING"
)


@dataclass(slots=True)
class StoreResult:
    key: DialogKey
    # Committed (newly, or already there before).
    stored: list[Item] = field(default_factory=list)
    # Not stored, with why; they stay pending and are retried.
    failed: list[tuple[Item, str]] = field(default_factory=list)
    # Rows actually added; the rest of `stored` were already in the table.
    inserted: int = 0


def is_outage(exc: BaseException) -> bool:
    """True when PostgreSQL is unreachable, as opposed to refusing these rows."""
    # asyncpg's client-side DataError (bad query input) is an InterfaceError, which
    # CONNECTION_ERRORS lists as a connection problem: it is the rows' fault here.
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, asyncpg_base.DataError)


async def store(pool: asyncpg.Pool, batch: DialogBatch) -> StoreResult:
    """Insert the batch; raises only when PostgreSQL is unreachable (see :func:`is_outage`)."""
    try:
        inserted = await _insert(pool, batch)
    except (asyncpg.PostgresError, asyncpg_base.DataError) as exc:
        if is_outage(exc):
            raise
        return await _after_failure(pool, batch, exc)
    return StoreResult(batch.key, stored=list(batch.items), inserted=inserted)


async def _after_failure(pool: asyncpg.Pool, batch: DialogBatch, exc: Exception) -> StoreResult:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, asyncpg.UndefinedTableError) or len(batch.items) == 1:
        # A missing table fails every row alike; a single row is its own culprit.
        return StoreResult(batch.key, failed=[(item, reason) for item in batch.items])
    # Some row (a deleted sender, a text PostgreSQL refuses) spoiled the statement: store the
    # others one by one, so only the culprit stays behind.
    log.warning("dialog %s: batch of %d refused (%s); storing one by one", batch.key.id, len(batch.items), reason)
    result = StoreResult(batch.key)
    for item in batch.items:
        single = await store(pool, DialogBatch(batch.key, [item]))
        result.stored += single.stored
        result.failed += single.failed
        result.inserted += single.inserted
    return result


async def _insert(pool: asyncpg.Pool, batch: DialogBatch) -> int:
    status = await pool.execute(_INSERT.format(table=batch.key.table), *batch.columns())
    # The status is "INSERT 0 <rows added>"; conflicting rows are not counted.
    return int(status.rsplit(" ", 1)[-1])
