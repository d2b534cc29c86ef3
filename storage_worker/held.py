"""The PostgreSQL connection a storage lane keeps across batches: taken from the pool once,
replaced when the server closed it while idle, let go of when it broke under a call, and asked
once whether its role may check a batch's senders at once (see storage_worker.sql)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class HeldConnection:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
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
        if self._conn is None:
            conn: asyncpg.pool.PoolConnectionProxy = await self.pool.acquire()
            self._generation += 1
            self._lost = False
            conn.add_termination_listener(self._on_termination(self._generation))
            self._conn = conn
            self.per_batch_checks = await may_turn_row_triggers_off(conn)
        return self._conn

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
                "this role may not set session_replication_role, so each stored row is checked "
                "against users on its own, which costs PostgreSQL about 40%% more per row; "
                "GRANT SET ON PARAMETER session_replication_role TO the worker's role to check "
                "each batch's senders at once"
            )
        return False
    return True
