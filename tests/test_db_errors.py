"""Which asyncpg error means what (chatkit/db.py): of asyncpg's two classes named DataError only
asyncpg.DataError is raised, by the server and by asyncpg itself for an argument it cannot
encode, and neither case passes for an outage."""

from __future__ import annotations

import asyncpg
import pytest

from chatkit.db import CONNECTION_ERRORS, ValueRefused, sqlstate_class_name
from storage_worker.writer import STATEMENT_ERRORS, is_outage


async def test_an_argument_asyncpg_cannot_encode_is_refused_not_an_outage(db: asyncpg.Connection) -> None:
    with pytest.raises(ValueRefused) as refused:
        await db.fetchval("SELECT $1::integer", 2**40)
    assert "invalid input for query argument $1" in str(refused.value)
    # The other DataError, asyncpg's client-side one, is an InterfaceError: not what came.
    assert isinstance(refused.value, asyncpg.PostgresError)
    assert not isinstance(refused.value, asyncpg.InterfaceError)
    assert isinstance(refused.value, STATEMENT_ERRORS)
    assert not is_outage(refused.value) and not isinstance(refused.value, CONNECTION_ERRORS)


async def test_a_value_the_server_refuses_is_the_same_class(db: asyncpg.Connection) -> None:
    with pytest.raises(ValueRefused) as refused:
        await db.fetchval("SELECT $1::text::integer", "not a number")
    assert refused.value.sqlstate == "22P02"
    assert not is_outage(refused.value)


def test_sqlstate_names() -> None:
    assert sqlstate_class_name("42P01") == "UndefinedTableError"
    assert sqlstate_class_name("23505") == "UniqueViolationError"
