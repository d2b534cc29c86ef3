"""Writing a batch, all its dialogs, in one round trip and one transaction, and telling entry
failures from outages.

The batch goes to :data:`storage_worker.sql.WRITE_BATCH` on a connection held across batches
(no pool acquire and reset per batch). Normally that is one call of plain inserts without
subtransactions. A unique violation means some rows were stored before (a redelivery): the
call runs again skipping them. When it is refused otherwise, the call runs again with each
dialog isolated, which reports the failing dialogs or rows instead of aborting; and when even
that call is refused as a whole (PostgreSQL rejected an argument, say a text with a NUL byte),
the batch is split, dialog by dialog, then row by row, until only the culprits are left.
``ON CONFLICT DO NOTHING`` makes every retry, and every redelivered message, a no-op for rows
already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from chatkit.db import CONNECTION_ERRORS, sqlstate_class_name
from chatkit.dialogs import DialogKey
from storage_worker import sql
from storage_worker.batch import DialogBatch, Item
from storage_worker.held import Connection, HeldConnection

log = logging.getLogger(__name__)

# What a refused statement raises: a server error, or asyncpg refusing an argument before
# sending it, which it also raises as a PostgresError (chatkit.db.ValueRefused). A lost connection
# is a PostgresError too (PostgresConnectionError): callers ask is_outage first.
STATEMENT_ERRORS = (asyncpg.PostgresError,)


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
    """True when PostgreSQL is unreachable, as opposed to refusing these rows (an argument
    asyncpg cannot encode is refused, not an outage: see chatkit.db.ValueRefused)."""
    return isinstance(exc, CONNECTION_ERRORS)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def reason_of(state: str, message: str) -> str:
    """The reason as the driver would have worded it, e.g. "UndefinedTableError: ..."."""
    return f"{sqlstate_class_name(state)}: {message}"


class Writer:
    """Writes batches through one connection of the pool, held across batches."""

    def __init__(self, pool: asyncpg.Pool, *, max_tables: int = 2000, life_seconds: float = 900.0) -> None:
        self.held = HeldConnection(pool, max_tables=max_tables, life_seconds=life_seconds)

    async def write(self, batches: list[DialogBatch]) -> list[StoreResult]:
        """Store the batches; raises only when PostgreSQL is unreachable (see :func:`is_outage`),
        after dropping the connection so the next call starts on a fresh one."""
        if not batches:
            return []
        try:
            conn = await self.held.get()
            results = await _write(conn, batches, self.held.per_batch_checks)
        except BaseException:
            # Refused statements are handled inside; what gets here is a broken connection, a
            # cancel mid-call or a bug, after which the connection's state is unknown.
            await self.held.drop()
            raise
        # Committed (or refused): only now may the connection be counted toward its
        # replacement, which happens before the next batch, never under one.
        self.held.written(batch.key for batch in batches)
        return results

    async def warm(self) -> None:
        """Connect and have the statement prepared (and its types looked up) before the first
        batch, so that batch pays for neither. Failing that, the first write connects."""
        try:
            conn = await self.held.get()
            await conn.fetch(sql.WRITE_BATCH, *arguments([]), False, False, None, False)
        except Exception as exc:
            log.info("could not prepare a connection ahead of the first batch (%s)", describe(exc))
            await self.held.drop()

    async def drop(self) -> None:
        await self.held.drop()


async def _write(conn: Connection, batches: list[DialogBatch], per_batch_checks: bool) -> list[StoreResult]:
    try:
        return await _attempt(conn, batches, skip_stored=False, per_batch_checks=per_batch_checks)
    except asyncpg.UniqueViolationError:
        log.info("batch of %d dialogs holds rows stored before; writing it again without them", len(batches))
        return await _attempt(conn, batches, skip_stored=True, per_batch_checks=per_batch_checks)


async def _attempt(
    conn: Connection, batches: list[DialogBatch], *, skip_stored: bool, per_batch_checks: bool
) -> list[StoreResult]:
    """One call for the whole batch; if refused, the isolated path (which checks senders row by
    row, finding the culprits). A unique violation (only possible without ``skip_stored``) is
    raised for the caller to try again skipping."""
    try:
        return await _call(
            conn, batches, isolate=False, skip_stored=skip_stored, per_batch_checks=per_batch_checks
        )
    except asyncpg.UniqueViolationError:
        raise
    except STATEMENT_ERRORS as exc:
        if is_outage(exc):
            raise
        log.info("batch of %d dialogs refused (%s); retrying with each dialog isolated", len(batches), describe(exc))
    return await _isolated(conn, batches)


async def _isolated(conn: Connection, batches: list[DialogBatch]) -> list[StoreResult]:
    try:
        return await _call(conn, batches, isolate=True, skip_stored=True, per_batch_checks=False)
    except STATEMENT_ERRORS as exc:
        if is_outage(exc):
            raise
        return await _split(conn, batches, exc)


async def _split(conn: Connection, batches: list[DialogBatch], exc: Exception) -> list[StoreResult]:
    """The call was refused as a whole: find the culprits by writing smaller parts."""
    if len(batches) > 1:
        return [result for batch in batches for result in await _isolated(conn, [batch])]
    [batch] = batches
    if len(batch.items) == 1:
        return [StoreResult(batch.key, failed=[(batch.items[0], describe(exc))])]
    log.warning("dialog %s: batch of %d refused (%s); storing one by one",
                batch.key.id, len(batch.items), describe(exc))
    merged = StoreResult(batch.key)
    for item in batch.items:
        [single] = await _isolated(conn, [DialogBatch(batch.key, [item])])
        merged.stored += single.stored
        merged.failed += single.failed
        merged.inserted += single.inserted
    return [merged]


async def _call(
    conn: Connection, batches: list[DialogBatch], *, isolate: bool, skip_stored: bool, per_batch_checks: bool
) -> list[StoreResult]:
    columns = arguments(batches)
    # Isolated calls check each dialog's senders on their own, so that a missing one fails its
    # rows only.
    sender_ids = None if isolate else sorted(set(columns[SENDERS]))
    args = (*columns, isolate, skip_stored, sender_ids, per_batch_checks)
    try:
        records = await conn.fetch(sql.WRITE_BATCH, *args)
    except asyncpg.UndefinedFunctionError:
        # Installed at start, but a database recreated or restored since then lacks them; left
        # alone, this would pass for a refused batch and dead-letter good messages.
        log.warning("storage functions missing; installing them again")
        await sql.install(conn)
        records = await conn.fetch(sql.WRITE_BATCH, *args)
    return results(batches, records)


# Where the senders are among the arguments.
SENDERS = 6


def arguments(batches: list[DialogBatch]) -> tuple[list[Any], ...]:
    """The function's array arguments: each dialog's lo, hi and last row index (1-based), then
    the rows' columns, dialog after dialog."""
    los: list[int] = []
    his: list[int] = []
    ends: list[int] = []
    items = [item for batch in batches for item in batch.items]
    end = 0
    for batch in batches:
        end += len(batch.items)
        los.append(batch.key.lo)
        his.append(batch.key.hi)
        ends.append(end)
    rows = [item.row for item in items]
    return (
        los, his, ends,
        [r.seq for r in rows], [r.id for r in rows], [r.sent_at for r in rows],
        [r.sender.id for r in rows], [r.text for r in rows],
    )


def results(batches: list[DialogBatch], records: list[asyncpg.Record]) -> list[StoreResult]:
    """Turn the function's rows back into one result per dialog."""
    out = [StoreResult(batch.key) for batch in batches]
    failed_rows: dict[int, dict[int, str]] = {}
    for dialog, item, inserted, state, reason in _rows(records):
        index = dialog - 1
        if state is None:
            out[index].inserted += inserted
        elif item is None:
            # Every row of the dialog failed alike.
            failed_rows[index] = {i: reason_of(state, reason) for i in range(len(batches[index].items))}
        else:
            failed_rows.setdefault(index, {})[item - 1] = reason_of(state, reason)
    for index, (batch, result) in enumerate(zip(batches, out, strict=True)):
        failed = failed_rows.get(index, {})
        for i, entry in enumerate(batch.items):
            if i in failed:
                result.failed.append((entry, failed[i]))
            else:
                result.stored.append(entry)
    return out


def _rows(records: list[asyncpg.Record]) -> Iterator[tuple[int, int | None, int, str | None, str]]:
    for record in records:
        yield record[0], record[1], record[2], record[3], record[4]
