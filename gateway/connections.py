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
from dataclasses import dataclass

import msgspec
from starlette.websockets import WebSocket

from chatkit.wire import Synced, UserRef

log = logging.getLogger(__name__)

# Application close codes (4000-4999 are the application's own, RFC 6455 §7.4.2).
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001


Abort = Callable[[WebSocket], bool]

# Live seqs remembered per dialog on one connection, to keep a sync from repeating them.
LIVE_SEQS_KEPT = 1024

# How long a closing handshake may take before the connection is dropped outright.
CLOSE_GRACE_SECONDS = 2.0


class Connection:
    def __init__(self, conn_id: str, websocket: WebSocket, queue_limit: int, abort: Abort) -> None:
        self.id = conn_id
        self.websocket = websocket
        self._abort = abort
        self.user: UserRef | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_limit)
        self._writer = asyncio.create_task(self._write(), name=f"writer-{conn_id}")
        self.closing = False
        self._closer: asyncio.Task[None] | None = None
        # While a `sync` is in flight, live events wait here (see SyncGate).
        self.gate = SyncGate()
        # What this connection has, so that nothing reaches it twice: per dialog, the seq it
        # is complete up to (from sync), and the seqs pushed live above that.
        self.complete: dict[str, int] = {}
        self.live: dict[str, set[int]] = {}

    def push(self, frame: bytes) -> None:
        """Queue one encoded frame; a client too slow to take it is disconnected."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("connection %s stopped reading; closing it", self.id)
            self.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and sync", force=True)

    def deliver_event(self, item: Held) -> None:
        """A live event: held back while a sync is in flight, dropped if this connection
        already has it, else queued."""
        if self.gate.holding:
            if not self.gate.hold(item, self._queue.maxsize):
                self.close(CLOSE_SLOW_CONSUMER, "too slow: reconnect and sync", force=True)
            return
        if item.dialog_id is not None and item.seq is not None:
            if item.seq <= self.complete.get(item.dialog_id, 0):
                return
            seen = self.live.setdefault(item.dialog_id, set())
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
        self.push(_without_held(frame, self.complete, self.live))
        for dialog_id, seq in positions.items():
            complete = max(seq, self.complete.get(dialog_id, 0))
            self.complete[dialog_id] = complete
            seen = self.live.get(dialog_id)
            if seen is not None:
                seen.difference_update([s for s in seen if s <= complete])
                if not seen:
                    del self.live[dialog_id]
        for item in self.gate.release(positions):
            self.deliver_event(item)

    def abort_sync(self) -> None:
        """The sync never reached a service: release what it held, unfiltered."""
        for item in self.gate.release({}):
            self.deliver_event(item)

    def close(self, code: int, reason: str, *, force: bool = False) -> None:
        """Close with a code; with ``force``, drop the TCP connection if the peer has not
        taken the close within the grace period (it may have stopped reading)."""
        if self.closing:
            return
        self.closing = True
        self._writer.cancel()
        self._closer = asyncio.create_task(self._close(code, reason, force))

    @property
    def closer(self) -> asyncio.Task[None] | None:
        return self._closer

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

    async def _close(self, code: int, reason: str, force: bool) -> None:
        try:
            await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_GRACE_SECONDS)
        except Exception as exc:  # timed out, or already gone
            log.debug("close of %s: %r", self.id, exc)
        if force:
            # A graceful close waits for the send buffer to drain, which a peer that stopped
            # reading never lets happen: give it the grace period, then drop the connection.
            await asyncio.sleep(CLOSE_GRACE_SECONDS)
            self._abort(self.websocket)


@dataclass(frozen=True, slots=True)
class Held:
    frame: bytes
    dialog_id: str | None
    seq: int | None


class SyncGate:
    """Closes the seam between a `sync` reply and live messages. Live message events that
    arrive while a sync is in flight are held; when the reply comes, those it already covered
    (seq at or below its position for the dialog) are dropped and the rest follow it."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._held: list[Held] = []

    @property
    def holding(self) -> bool:
        return self.in_flight > 0

    def begin(self) -> None:
        self.in_flight += 1

    def hold(self, item: Held, limit: int) -> bool:
        if len(self._held) >= limit:
            return False
        self._held.append(item)
        return True

    def release(self, positions: dict[str, int]) -> list[Held]:
        """Events to send now that one sync has been answered (none while others are out)."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight:
            return []
        held, self._held = self._held, []
        return [
            item for item in held
            if item.seq is None or item.dialog_id is None or item.seq > positions.get(item.dialog_id, -1)
        ]


_decode_synced = msgspec.json.Decoder(Synced).decode
_encode = msgspec.json.Encoder().encode


def _without_held(frame: bytes, complete: dict[str, int], live: dict[str, set[int]]) -> bytes:
    """The sync reply minus the messages this connection already has."""
    if not live and not complete:
        return frame
    try:
        synced = _decode_synced(frame)
    except msgspec.ValidationError:
        return frame  # an error reply
    kept = [
        m for m in synced.messages
        if m.seq > complete.get(m.dialog_id, 0) and m.seq not in live.get(m.dialog_id, ())
    ]
    if len(kept) == len(synced.messages):
        return frame
    synced.messages = kept
    return _encode(synced)


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

    def add(self, websocket: WebSocket, queue_limit: int, abort: Abort) -> Connection:
        conn = Connection(f"{self.gateway_id}.{next(self._ids)}", websocket, queue_limit, abort)
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
