"""Connections held by this gateway, and which user each belongs to.

A connection writes each frame straight to its socket when nothing is waiting to go out (see
gateway/inline.py); only while the transport is paused do frames wait, in a bounded deque
drained by a writer task that exists just for that time. So a client that stops reading can
neither block delivery to others nor grow the gateway's memory: when ``queue_limit`` frames wait
it is closed with code 4008 and must `sync` when it comes back.

An idle connection is most of what a gateway holds (10,000 of them per process), so it is kept
small: ``__slots__``, and the sync bookkeeping (gate, positions, live seqs) and the deque are
created only when first needed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from chatkit.wire import UserRef
from gateway.inline import Step, first_step, resume
from gateway.sync_gate import Held, SyncGate, without_held

log = logging.getLogger(__name__)

# Application close codes (4000-4999 are the application's own, RFC 6455 §7.4.2).
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001

Scope = MutableMapping[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Abort = Callable[[Scope], bool]

# Live seqs remembered per dialog on one connection, to keep a sync from repeating them.
LIVE_SEQS_KEPT = 1024

# How long a closing handshake may take before the connection is dropped outright.
CLOSE_GRACE_SECONDS = 2.0


class Connection:
    __slots__ = (
        "_abort", "_closer", "_complete", "_gate", "_limit", "_live", "_pending", "_send", "_writer",
        "closing", "id", "scope", "user",
    )

    def __init__(self, conn_id: str, scope: Scope, send: Send, queue_limit: int, abort: Abort) -> None:
        self.id = conn_id
        self.scope = scope
        self._send = send
        self._abort = abort
        self._limit = queue_limit
        self.user: UserRef | None = None
        self.closing = False
        self._closer: asyncio.Task[None] | None = None
        # Frames waiting while the transport is paused, and the task writing them.
        self._pending: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        # While a `sync` is in flight, live events wait in the gate (see SyncGate). What this
        # connection has, so that nothing reaches it twice: per dialog, the seq it is complete
        # up to (from sync), and the seqs pushed live above that.
        self._gate: SyncGate | None = None
        self._complete: dict[str, int] | None = None
        self._live: dict[str, set[int]] | None = None

    def push(self, frame: bytes, *, ephemeral: bool = False) -> None:
        """Send one encoded frame, or queue it behind those waiting; a client too slow to take
        them is disconnected. An ``ephemeral`` frame (typing, presence) is sent only if it can
        go now: behind a backlog it would be stale, so a slow client loses those first."""
        if self.closing:
            return
        if self._writer is None:
            self._write_now(frame)
            return
        if ephemeral:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        if len(pending) >= self._limit:
            log.warning("connection %s stopped reading; closing it", self.id)
            self.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and sync", force=True)
            return
        pending.append(frame)

    def begin_sync(self) -> None:
        if self._gate is None:
            self._gate = SyncGate()
        self._gate.begin()

    def deliver_event(self, item: Held) -> None:
        """A live event: held back while a sync is in flight, dropped if this connection
        already has it, else sent."""
        gate = self._gate
        if gate is not None and gate.holding:
            if not gate.hold(item, self._limit):
                self.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and sync", force=True)
            return
        if item.dialog_id is not None and item.seq is not None:
            if self._complete is not None and item.seq <= self._complete.get(item.dialog_id, 0):
                return
            if self._live is None:
                self._live = {}
            seen = self._live.setdefault(item.dialog_id, set())
            if item.seq in seen:
                return
            if len(seen) >= LIVE_SEQS_KEPT:
                # Forget the oldest half: a client this far from a sync has older gaps to fill.
                for seq in sorted(seen)[: LIVE_SEQS_KEPT // 2]:
                    seen.discard(seq)
            seen.add(item.seq)
        self.push(item.frame)

    def sync_reply(self, frame: bytes, positions: dict[str, int]) -> None:
        """Send a sync reply without what this connection already got live, then release the
        events held while it was in flight."""
        complete = self._complete if self._complete is not None else {}
        live = self._live if self._live is not None else {}
        self.push(without_held(frame, complete, live))
        for dialog_id, seq in positions.items():
            upto = complete[dialog_id] = max(seq, complete.get(dialog_id, 0))
            seen = live.get(dialog_id)
            if seen is not None:
                seen.difference_update([s for s in seen if s <= upto])
                if not seen:
                    del live[dialog_id]
        if complete and self._complete is None:
            self._complete = complete
        if not live:
            self._live = None
        self._release(positions)

    def abort_sync(self) -> None:
        """The sync never reached a service: release what it held, unfiltered."""
        self._release({})

    def _release(self, positions: dict[str, int]) -> None:
        gate = self._gate
        if gate is None:
            return
        released = gate.release(positions)
        if not gate.holding:
            self._gate = None  # back to idle: the next sync gets a fresh one
        for item in released:
            self.deliver_event(item)

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
            self._abort(self.scope)


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

    def add(self, scope: Scope, send: Send, queue_limit: int, abort: Abort) -> Connection:
        conn = Connection(f"{self.gateway_id}.{next(self._ids)}", scope, send, queue_limit, abort)
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
