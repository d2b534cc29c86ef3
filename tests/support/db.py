"""A dialog's stored rows, as the tests read them back from PostgreSQL."""

from __future__ import annotations

import asyncpg

from chat_client.client import Frame
from tests.support.dialogs import table_of
from tests.support.polling import wait_until
from tests.support.protocol import parse_time


async def rows(db: asyncpg.Connection, dialog_id: str) -> list[asyncpg.Record]:
    """The dialog's stored messages in seq order; none while its table does not exist."""
    table = table_of(dialog_id)
    if not await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{table}"'):
        return []
    return list(await db.fetch(f'SELECT seq, id, sent_at, sender_id, text FROM "{table}" ORDER BY seq'))


async def wait_rows(db: asyncpg.Connection, dialog_id: str, n: int) -> list[asyncpg.Record]:
    """The dialog's rows once it holds at least ``n``."""
    seen: list[asyncpg.Record] = []

    async def enough() -> list[asyncpg.Record] | None:
        seen[:] = await rows(db, dialog_id)
        return list(seen) if len(seen) >= n else None

    found = await wait_until(enough, what=lambda: f"{n} rows in dialog {dialog_id}, found {len(seen)}")
    assert found is not None
    return found


def assert_row_is(row: asyncpg.Record, message: Frame) -> None:
    """The stored row is the message as it went out on the wire."""
    assert row["seq"] == message["seq"], (row, message)
    assert str(row["id"]) == message["id"], (row, message)
    assert row["sender_id"] == message["sender"]["id"], (row, message)
    assert row["text"] == message["text"], (row, message)
    assert row["sent_at"] == parse_time(message["sent_at"]), (row, message)
