"""Delivering what arrives on the broker to this gateway's connections: replies to one
connection (the gateway's own channel) and events for every connection of a user."""

from __future__ import annotations

import logging

import msgspec

from chatkit import keys
from chatkit.envelopes import ConnReply, UserEvent
from chatkit.wire import Resync
from gateway.broker import Broker, Delivery, Resubscribed
from gateway.connections import Registry
from gateway.sync_gate import Held

log = logging.getLogger(__name__)

_decode_reply = msgspec.json.Decoder(ConnReply).decode
_decode_event = msgspec.json.Decoder(UserEvent).decode
_encode = msgspec.json.Encoder().encode


class Relay:
    def __init__(self, broker: Broker, registry: Registry, gateway_channel: str) -> None:
        self.broker = broker
        self.registry = registry
        self.gateway_channel = gateway_channel

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
        conn = self.registry.connections.get(reply.conn)
        if conn is None:
            return  # the client left before its answer came
        if reply.login is not None:
            await self.registry.bind(conn, reply.login)
        if reply.identity is not None:
            conn.user = reply.identity
        if reply.answers == "sync":
            conn.sync_reply(bytes(reply.frame), reply.positions or {})
        else:
            conn.push(bytes(reply.frame))

    def _event(self, user_id: int, event: UserEvent) -> None:
        if event.identity is not None:
            self.registry.rename(event.identity)
        if event.ephemeral:
            frame = bytes(event.frame)
            for conn in self.registry.of_user(user_id):
                if conn.id != event.skip_conn:
                    conn.push(frame, ephemeral=True)
            return
        item = Held(bytes(event.frame), event.dialog_id, event.seq)
        for conn in self.registry.of_user(user_id):
            if conn.id != event.skip_conn:
                conn.deliver_event(item)
