"""Delivering what arrives on the broker to this gateway's connections: replies to one
connection (the gateway's own channel) and events for every connection of a user. What a
connection is owed (held while it syncs, never twice) is decided by its DeliveryState
(gateway/delivery.py); the connection writes what that lets through."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from chatkit import keys
from chatkit.envelopes import ConnReply, UserEvent
from chatkit.wire import Resync, UserRef
from gateway.broker import Broker, Delivery, Resubscribed
from gateway.connections import CLOSE_LOGGED_OUT, LOGGED_OUT_REASON, Connection, Registry
from gateway.delivery import DeliveryState, Verdict
from gateway.protocol import rate_limited

if TYPE_CHECKING:
    from gateway.deadlines import Deadlines
    from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

_decode_reply = msgspec.json.Decoder(ConnReply).decode
_decode_event = msgspec.json.Decoder(UserEvent).decode
_encode = msgspec.json.Encoder().encode


class Relay:
    def __init__(
        self, broker: Broker, registry: Registry, gateway_channel: str, deadlines: Deadlines,
        metrics: GatewayMetrics, connections_per_user: int = 0,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.gateway_channel = gateway_channel
        self.deadlines = deadlines
        self.metrics = metrics
        # Logged-in connections one user may hold here; 0: any number.
        self.connections_per_user = connections_per_user

    async def run(self) -> None:
        while True:
            item = await self.broker.next_message()
            try:
                if isinstance(item, Resubscribed):
                    self.resync_all(item.reason)
                else:
                    await self.deliver(item)
            except Exception:
                # One bad message must not stop delivery to everyone else.
                log.exception("could not deliver a message")

    async def deliver(self, item: Delivery) -> None:
        if item.channel == self.gateway_channel:
            await self._reply(_decode_reply(item.data))
        elif item.channel.startswith(keys.USER_CHANNEL_PREFIX):
            user_id = int(item.channel[len(keys.USER_CHANNEL_PREFIX):])
            self._event(user_id, _decode_event(item.data))

    def resync_all(self, reason: str) -> None:
        frame = _encode(Resync(reason=f"live events may have been missed ({reason}); send sync"))
        for conns in self.registry.by_user.values():
            for conn in conns:
                conn.push(frame)

    async def _reply(self, reply: ConnReply) -> None:
        in_flight = self.deadlines.take(reply.request)
        if in_flight is None and reply.request:
            log.debug("dropped a reply to request %d: past its deadline", reply.request)
            return  # the client was told "unavailable" already
        try:
            conn = self.registry.connections.get(reply.conn)
            if conn is None:
                return  # the client left before its answer came
            if reply.login is not None:
                if self._full(conn, reply.login):
                    conn.push(too_many_connections(self.connections_per_user, bytes(reply.frame)))
                    return
                await self.registry.bind(conn, reply.login)
                conn.session = reply.session
            if reply.logout:
                await self.registry.unbind(conn)
            if reply.identity is not None:
                conn.user = reply.identity
            if reply.answers == "sync":
                deliver_sync_reply(conn, bytes(reply.frame), reply.positions or {})
            else:
                conn.push(bytes(reply.frame))
        finally:
            if in_flight is not None:
                self.deadlines.settled(in_flight)

    def _full(self, conn: Connection, user: UserRef) -> bool:
        if not self.connections_per_user or (conn.user is not None and conn.user.id == user.id):
            return False
        return len(self.registry.of_user(user.id)) >= self.connections_per_user

    def _event(self, user_id: int, event: UserEvent) -> None:
        if event.end_session is not None:
            end_session(self.registry.of_user(user_id), event)
            return
        if event.identity is not None:
            self.registry.rename(event.identity)
        frame = bytes(event.frame)
        pushed = False
        for conn in self.registry.of_user(user_id):
            if conn.id == event.skip_conn:
                continue
            pushed = True
            if event.ephemeral:  # not a message: never held, never remembered
                conn.push(frame, ephemeral=True)
            else:
                deliver_live(conn, frame, event.dialog_id, event.seq)
        if pushed and event.seq is not None:
            self.metrics.delivered(frame)


class _Ref(msgspec.Struct):
    ref: str | None = None


_decode_ref = msgspec.json.Decoder(_Ref).decode
# When a connection refused for the user's connection cap may try again: a guess, since it
# depends on the user's other connections closing.
USER_CONNECTIONS_RETRY_MS = 5000


def too_many_connections(cap: int, login_reply: bytes) -> bytes:
    """The answer to a login over the user's connection cap, in place of its `logged_in`."""
    return rate_limited(f"connections of this user (at most {cap})", USER_CONNECTIONS_RETRY_MS,
                        _decode_ref(login_reply).ref)


def end_session(conns: Iterable[Connection], event: UserEvent) -> None:
    """A logout: the user's connections in that session ("*": in any) are told and closed."""
    frame = bytes(event.frame)
    for conn in list(conns):
        if conn.id != event.skip_conn and event.end_session in ("*", conn.session):
            conn.push(frame)
            conn.close(CLOSE_LOGGED_OUT, LOGGED_OUT_REASON)


def deliver_live(conn: Connection, frame: bytes, dialog_id: str | None, seq: int | None) -> None:
    """A live event for one connection: written, dropped as a duplicate, or held while a sync
    is in flight (a connection holding too many is too slow: closed with 4008)."""
    state = conn.delivery
    if state is None:
        if dialog_id is None or seq is None:
            conn.push(frame)  # nothing to remember: no state for it
            return
        state = conn.delivery = DeliveryState(conn.queue_limit)
    verdict = state.live(frame, dialog_id, seq)
    if verdict is Verdict.SEND:
        conn.push(frame)
    elif verdict is Verdict.OVERFLOW:
        conn.close_slow()


def sync_started(conn: Connection) -> None:
    """A `sync` is on its way to a service: live events wait for its reply."""
    _state(conn).begin_sync()


def deliver_sync_reply(conn: Connection, frame: bytes, positions: dict[str, int]) -> None:
    """A `sync`'s reply, minus what the connection got live, then what was held meanwhile."""
    for out in _state(conn).sync_reply(frame, positions):
        conn.push(out)


def sync_failed(conn: Connection) -> None:
    """The `sync` never reached a service: what it held goes out now."""
    if conn.delivery is not None:
        for frame in conn.delivery.sync_failed():
            conn.push(frame)


def _state(conn: Connection) -> DeliveryState:
    if conn.delivery is None:
        conn.delivery = DeliveryState(conn.queue_limit)
    return conn.delivery
