"""Connections held by this gateway, and which user each belongs to.

A connection only writes. It writes each frame straight to its socket when nothing is waiting
to go out (see gateway/inline.py); only while the transport is paused do frames wait, in a
bounded deque drained by a writer task that exists just for that time. So a client that stops
reading can neither block delivery to others nor grow the gateway's memory: when
``queue_limit`` frames wait it is closed with code 4008 and must `sync` when it comes back.
What it is owed (sync holds, de-duplication) is gateway/delivery.py's, kept in ``delivery``
and used by gateway/relay.py.

An idle connection is most of what a gateway holds (10,000 of them per process), so it is kept
small: ``__slots__``, and the delivery state and the deque are created only when first needed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from chatkit.wire import UserRef
from gateway.delivery import DeliveryState
from gateway.inline import Step, first_step, resume
from gateway.types import ASGISend

log = logging.getLogger(__name__)

# Close codes (docs/PROTOCOL.md; 4000-4999 are the application's own, RFC 6455 §7.4.2).
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001
SLOW_CONSUMER_REASON = "too slow: reconnect and sync"

# Drops the TCP connection at once (the server's transport abort, see gateway/types.py).
Abort = Callable[[], None]

# How long a closing handshake may take before the connection is dropped outright.
CLOSE_GRACE_SECONDS = 2.0


def _ignore(_: bytes) -> None:
    pass


class Hooks:
    """What a connection reports, shared by every connection of a registry (gateway/metrics.py
    fills them in): each frame pushed, and a disconnect for slowness."""

    __slots__ = ("on_push", "on_slow")

    def __init__(self) -> None:
        self.on_push: Callable[[bytes], None] = _ignore
        self.on_slow: Callable[[], None] = lambda: None


class Connection:
    __slots__ = (
        "_abort", "_closer", "_hooks", "_limit", "_pending", "_send", "_writer", "closing", "delivery", "id",
        "user",
    )

    def __init__(
        self, conn_id: str, send: ASGISend, queue_limit: int, abort: Abort, hooks: Hooks | None = None,
    ) -> None:
        self.id = conn_id
        self._send = send
        self._abort = abort
        self._hooks = hooks if hooks is not None else Hooks()
        self._limit = queue_limit
        self.user: UserRef | None = None
        self.closing = False
        self._closer: asyncio.Task[None] | None = None
        # Frames waiting while the transport is paused, and the task writing them.
        self._pending: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        # What this connection is owed: created by the relay on first use (gateway/delivery.py).
        self.delivery: DeliveryState | None = None

    @property
    def queue_limit(self) -> int:
        return self._limit

    def push(self, frame: bytes, *, ephemeral: bool = False) -> None:
        """Send one encoded frame, or queue it behind those waiting; a client too slow to take
        them is disconnected. An ``ephemeral`` frame (typing, presence) is sent only if it can
        go now: behind a backlog it would be stale, so a slow client loses those first."""
        if self.closing:
            return
        self._hooks.on_push(frame)
        if self._writer is None:
            self._write_now(frame)
            return
        if ephemeral:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        if len(pending) >= self._limit:
            self.close_slow()
            return
        pending.append(frame)

    def close_slow(self) -> None:
        """The client stopped reading: close with 4008, and drop it if it cannot be told."""
        log.warning("connection %s stopped reading; closing it", self.id)
        self._hooks.on_slow()
        self.close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON, force=True)

    def close(self, code: int, reason: str, *, force: bool = False) -> None:
        """Close with a code; with ``force``, drop the TCP connection if the peer has not
        taken the close within the grace period (it may have stopped reading)."""
        if self.closing:
            return
        self._stop_writing()
        self._closer = asyncio.create_task(self._close(code, reason, force))

    @property
    def closer(self) -> asyncio.Task[None] | None:
        return self._closer

    async def finish(self) -> None:
        """Stop writing (the socket is gone or going)."""
        writer = self._writer
        self._stop_writing()
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _stop_writing(self) -> None:
        self.closing = True
        self._pending = None
        if self._writer is not None:
            self._writer.cancel()

    def _write_now(self, frame: bytes) -> None:
        try:
            started = first_step(self._send({"type": "websocket.send", "text": frame.decode()}))
        except Exception as exc:  # the socket went away under us; the reader will notice
            log.debug("write to %s failed: %s", self.id, exc)
            return
        if started is not None:  # the transport is paused: the rest waits in a task
            self._writer = asyncio.create_task(self._drain(*started))

    async def _drain(self, step: Step, blocked: Any) -> None:
        try:
            await resume(step, blocked)
            while self._pending:
                frame = self._pending.popleft()
                await self._send({"type": "websocket.send", "text": frame.decode()})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us; the reader will notice
            log.debug("write to %s failed: %s", self.id, exc)
        finally:
            self._writer = None
            self._pending = None

    async def _close(self, code: int, reason: str, force: bool) -> None:
        try:
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": code, "reason": reason}), CLOSE_GRACE_SECONDS
            )
        except Exception as exc:  # timed out, or already gone
            log.debug("close of %s: %r", self.id, exc)
        if force:
            # A graceful close waits for the send buffer to drain, which a peer that stopped
            # reading never lets happen: give it the grace period, then drop the connection.
            await asyncio.sleep(CLOSE_GRACE_SECONDS)
            self._abort()
            log.info("aborted connection %s", self.id)


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
        self.hooks = Hooks()

    def add(self, send: ASGISend, queue_limit: int, abort: Abort) -> Connection:
        conn = Connection(f"{self.gateway_id}.{next(self._ids)}", send, queue_limit, abort, self.hooks)
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
