"""Delivering what arrives on the broker to this gateway's connections: replies to one
connection (the gateway's own channel) and events for every connection of a user. What a
connection is owed (held while it syncs, never twice) is decided by its DeliveryState
(gateway/delivery.py); the connection writes what that lets through."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from chatkit import keys
from chatkit.envelopes import ConnReply, UserEvent
from chatkit.wire import Resync
from gateway.broker import Broker, Delivery, Resubscribed
from gateway.connections import Connection, Registry
from gateway.delivery import DeliveryState, Verdict

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
        metrics: GatewayMetrics,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.gateway_channel = gateway_channel
        self.deadlines = deadlines
        self.metrics = metrics

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
                await self.registry.bind(conn, reply.login)
            if reply.identity is not None:
                conn.user = reply.identity
            if reply.answers == "sync":
                deliver_sync_reply(conn, bytes(reply.frame), reply.positions or {})
            else:
                conn.push(bytes(reply.frame))
        finally:
            if in_flight is not None:
                self.deadlines.settled(in_flight)

    def _event(self, user_id: int, event: UserEvent) -> None:
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
