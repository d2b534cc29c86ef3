"""The PostgreSQL connection a storage lane keeps across batches: taken from the pool once,
replaced when the server closed it while idle, let go of when it broke under a call, asked
once whether its role may turn the old tables' foreign key checks off (see storage_worker.sql),
and replaced between batches once it has touched ``max_tables`` dialog tables or lived
``life_seconds``: PostgreSQL keeps about 15 KB of cache per table a backend touched until the
backend ends, so a lane writing to every active dialog would otherwise grow toward the size of
the whole catalogue. The replacement happens only between batches (a batch is committed or
refused before :meth:`HeldConnection.written` is called), so no batch is lost or written twice;
the bound is exceeded at most by one batch's dialogs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import asyncpg

from chatkit.dialogs import DialogKey

log = logging.getLogger(__name__)

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class HeldConnection:
    def __init__(self, pool: asyncpg.Pool, *, max_tables: int = 2000, life_seconds: float = 900.0) -> None:
        self.pool = pool
        self.max_tables = max_tables
        self.life_seconds = life_seconds
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        # The dialog tables the held connection has written to, and when it was taken.
        self._tables: set[DialogKey] = set()
        self._since = 0.0
        # How many connections were replaced for their tables or their age.
        self.recycled = 0
        # Set when the held connection dies while idle (a server restart, an idle timeout):
        # asyncpg has then taken it back into the pool, and every call on it would fail with
        # an InterfaceError that must not pass for a refused batch.
        self._lost = False
        self._generation = 0
        # Whether the held connection may check senders once per batch: its role may set
        # session_replication_role.
        self.per_batch_checks = False

    async def get(self) -> asyncpg.pool.PoolConnectionProxy:
        if self._lost:
            self._conn = None
        if self._conn is not None and self._due():
            await self._recycle()
        if self._conn is None:
            conn: asyncpg.pool.PoolConnectionProxy = await self.pool.acquire()
            self._generation += 1
            self._lost = False
            conn.add_termination_listener(self._on_termination(self._generation))
            self._conn = conn
            self._tables = set()
            self._since = time.monotonic()
            self.per_batch_checks = await may_turn_row_triggers_off(conn)
        return self._conn

    def written(self, keys: Iterable[DialogKey]) -> None:
        """Count the tables a finished batch touched; the next :meth:`get` replaces the
        connection if that made it due."""
        if len(self._tables) < self.max_tables:
            self._tables.update(keys)

    @property
    def tables(self) -> int:
        return len(self._tables)

    def _due(self) -> bool:
        return len(self._tables) >= self.max_tables or time.monotonic() - self._since >= self.life_seconds

    async def _recycle(self) -> None:
        """Close the held connection gracefully (its backend ends and frees its caches); the
        pool then opens a new one on the next acquire."""
        conn, self._conn = self._conn, None
        if conn is None or self._lost:
            return
        self.recycled += 1
        log.debug("replacing a storage connection after %d tables, %.0fs",
                  len(self._tables), time.monotonic() - self._since)
        try:
            await conn.close(timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.debug("closing a replaced connection failed (%s); terminating it", exc)
            conn.terminate()

    async def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or self._lost:
            return
        try:
            conn.terminate()
            await self.pool.release(conn)
        except asyncpg.InterfaceError:
            # It died under a call, and asyncpg took it back before its termination listener
            # had run: nothing left to let go of.
            log.debug("connection already back in the pool")

    def _on_termination(self, generation: int) -> Callable[[object], None]:
        def terminated(_: object) -> None:
            # Only the connection held now: an earlier one, dropped, also ends up here.
            if generation == self._generation:
                self._lost = True

        return terminated


_warned_row_checks = False


async def may_turn_row_triggers_off(conn: Connection) -> bool:
    """Whether this connection's role may set session_replication_role (a superuser, or a role
    granted SET on it), which the per-batch sender check needs."""
    global _warned_row_checks
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
    except asyncpg.InsufficientPrivilegeError:
        if not _warned_row_checks:
            _warned_row_checks = True
            log.warning(
                "this role may not set session_replication_role, so each row stored into a dialog "
                "table of the older layout (with a foreign key) is also checked against users on "
                "its own, which costs PostgreSQL about 40%% more per row; "
                "GRANT SET ON PARAMETER session_replication_role TO the worker's role to check "
                "each batch's senders at once"
            )
        return False
    return True
