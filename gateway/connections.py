"""Connections held by this gateway, and which user each belongs to.

Each connection has a bounded outgoing queue drained by its own writer task, so a client that
stops reading can neither block delivery to others nor grow the gateway's memory: when its
queue is full it is closed with code 4008 and must `sync` when it comes back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from chatkit.wire import UserRef

log = logging.getLogger(__name__)

# Application close codes (4000-4999 are the application's own, RFC 6455 §7.4.2).
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001


class Connection:
    def __init__(self, conn_id: str, websocket: WebSocket, queue_limit: int) -> None:
        self.id = conn_id
        self.websocket = websocket
        self.user: UserRef | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_limit)
        self._writer = asyncio.create_task(self._write(), name=f"writer-{conn_id}")
        self.closing = False
        self._closer: asyncio.Task[None] | None = None

    def push(self, frame: bytes) -> None:
        """Queue one encoded frame; a client too slow to take it is disconnected."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("connection %s stopped reading; closing it", self.id)
            self.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and sync")

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._writer.cancel()
        self._closer = asyncio.create_task(self._close(code, reason))

    async def finish(self) -> None:
        """Stop writing (the socket is gone or going)."""
        self.closing = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer

    async def _write(self) -> None:
        send = self.websocket.send_text
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    return
                await send(frame.decode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us; the reader will notice
            log.debug("write to %s failed: %s", self.id, exc)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)


OnUserChange = Callable[[int], Awaitable[None]]


class Registry:
    """conn id → connection, and user id → that user's connections on this gateway. Calls
    ``on_first`` when a user gets their first connection here (subscribe to their channel)
    and ``on_last`` when the last one goes (unsubscribe)."""

    def __init__(self, gateway_id: str, on_first: OnUserChange, on_last: OnUserChange) -> None:
        self.gateway_id = gateway_id
        self._ids = itertools.count(1)
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[int, set[Connection]] = {}
        self._on_first = on_first
        self._on_last = on_last

    def add(self, websocket: WebSocket, queue_limit: int) -> Connection:
        conn = Connection(f"{self.gateway_id}.{next(self._ids)}", websocket, queue_limit)
        self.connections[conn.id] = conn
        return conn

    async def remove(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        await self._unbind(conn)
        await conn.finish()

    async def bind(self, conn: Connection, user: UserRef) -> None:
        if conn.user is not None and conn.user.id != user.id:
            await self._unbind(conn)
        conn.user = user
        conns = self.by_user.setdefault(user.id, set())
        first = not conns
        conns.add(conn)
        if first:
            await self._on_first(user.id)

    def rename(self, user: UserRef) -> None:
        for conn in self.by_user.get(user.id, ()):
            conn.user = user

    def of_user(self, user_id: int) -> set[Connection]:
        return self.by_user.get(user_id, set())

    async def _unbind(self, conn: Connection) -> None:
        if conn.user is None:
            return
        conns = self.by_user.get(conn.user.id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user.id]
                await self._on_last(conn.user.id)
        conn.user = None
