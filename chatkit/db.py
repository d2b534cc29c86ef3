"""PostgreSQL helpers: a pool that waits for the server, the schema, per-dialog tables, and
which of asyncpg's errors mean what. The one module that reaches into asyncpg's private names."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

import asyncpg

# asyncpg's SQLSTATE -> class table lives in this private module only (see sqlstate_class_name).
from asyncpg.exceptions import _base as asyncpg_internals

from chatkit.backoff import Backoff
from chatkit.dialogs import DialogKey
from chatkit.errors import Unavailable

log = logging.getLogger(__name__)

# asyncpg has two classes named DataError, and only this one is ever raised: asyncpg.DataError
# (asyncpg.exceptions.DataError), a PostgresError of SQLSTATE class 22, "data exception". The
# server raises it for a value it refuses (a NUL byte in a text), and asyncpg raises it too,
# before anything is sent, for an argument it cannot encode (an integer out of its column's
# range: "invalid input for query argument $n"). The other, asyncpg.exceptions._base.DataError,
# an InterfaceError, is defined but never raised by asyncpg; nothing here names it.
# tests/test_db_errors.py holds asyncpg to this.
ValueRefused = asyncpg.DataError

# Key of the advisory lock that serialises schema creation across services starting at once.
SCHEMA_LOCK_KEY = 0x63686174  # "chat"

# Errors that mean "the server is not there right now", as opposed to a refused statement.
# PostgresConnectionError (SQLSTATE class 08) covers ConnectionDoesNotExistError, a connection
# lost mid-call; OSError covers ConnectionError and TimeoutError. Not asyncpg.InterfaceError:
# asyncpg raises it for a misuse of the client (a call on a connection already released or
# closed), which retrying would never mend.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait_seconds: float = 30.0, max_queries: int = 50_000,
) -> asyncpg.Pool:
    """Connect, retrying with backoff for up to ``wait_seconds`` while the server starts
    (``math.inf``: until it does, for a service that must outlive a database outage).
    A connection that ran ``max_queries`` statements is closed when released and replaced
    (each statement touches at most one dialog table, so this bounds the tables it caches)."""
    backoff = Backoff()
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=30, max_queries=max_queries,
            )
            return pool
        except CONNECTION_ERRORS as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A stop request that arrived mid-connect can surface as a connection error.
                raise asyncio.CancelledError from exc
            if asyncio.get_running_loop().time() >= deadline:
                raise Unavailable(f"PostgreSQL at {_redact(dsn)} unreachable: {exc}") from exc
            delay = backoff.next_delay()
            log.warning("PostgreSQL not reachable yet (%s); retrying in %.2fs", exc, delay)
            await asyncio.sleep(delay)


async def expire_connections_every(pool: asyncpg.Pool, seconds: float) -> None:
    """Until cancelled, have every connection of the pool replaced every ``seconds``: each is
    closed when next released (or, idle, when next acquired) and a new one takes its place, so
    no connection lives much longer than ``seconds`` with whatever it cached."""
    while True:
        await asyncio.sleep(seconds)
        await pool.expire_connections()


async def apply_schema(pool: asyncpg.Pool) -> None:
    sql = resources.files("chatkit").joinpath("schema.sql").read_text()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        await conn.execute(sql)


def dialog_table_ddl(key: DialogKey) -> str:
    """A dialog's table as made since the many-dialogs work (docs/PERFORMANCE.md): one index,
    the primary key on seq, packed full (seqs only ever grow, so pages never take inserts in
    their middle). No unique index on id: a stored message is identified by its seq, and a
    redelivered one, which carries the same seq, is skipped on it. No foreign key to users:
    creating one locks `users` against every other dialog creation; the storage worker checks
    each batch's senders (storage_worker.sql) and a trigger on users deletes a deleted user's
    rows (schema.sql). Tables made by :func:`legacy_dialog_table_ddl` keep working."""
    # The name comes only from DialogKey's two integers, and is quoted.
    return (
        f"CREATE TABLE IF NOT EXISTS {key.table} ("
        " seq bigint PRIMARY KEY WITH (fillfactor = 100),"
        " id uuid NOT NULL,"
        " sent_at timestamptz NOT NULL,"
        " sender_id integer NOT NULL,"
        " text text NOT NULL)"
    )


def legacy_dialog_table_ddl(key: DialogKey) -> str:
    """The table as databases made before hold it (a unique id index, a foreign key to users):
    still written and read; kept for the tests and the bench that compare the two."""
    return (
        f"CREATE TABLE IF NOT EXISTS {key.table} ("
        " seq bigint PRIMARY KEY,"
        " id uuid NOT NULL UNIQUE,"
        " sent_at timestamptz NOT NULL,"
        " sender_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        " text text NOT NULL)"
    )


async def lock_dialog(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, key: DialogKey) -> None:
    """Serialise work on one dialog until the transaction ends (the two-int lock space,
    apart from the schema lock's)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", key.lo, key.hi)


def sqlstate_class_name(state: str) -> str:
    """The name asyncpg gives an error of SQLSTATE ``state`` (``42P01``: UndefinedTableError),
    for an error reported as data rather than raised. asyncpg's own table, which it keeps in a
    private module and the stubs do not declare; read here only, so an asyncpg upgrade that
    moves it breaks one function."""
    meta = asyncpg_internals.PostgresMessageMeta
    cls: type[BaseException] = meta.get_message_class_for_sqlstate(state)  # type: ignore[attr-defined]
    return cls.__name__


def _redact(dsn: str) -> str:
    # Never log a password that may sit in the URL.
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
