"""Turning a send into a message with the dialog's next seq, through one Lua script
(accept.lua): counter, idempotency record, pending set, messages stream, fan-out, the sender's
reply and the request's acknowledgement move together or not at all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from chat_service.accept import SCRIPT, SHA, AcceptCall
from chat_service.send_frames import send_pieces
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.redis import RedisClient
from chatkit.wire import UserRef, wire_time


class FloorNeeded(Exception):
    """The dialog has no counter in Redis: it is unknown here, or Redis lost it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the send came from, so the script can answer it and acknowledge it."""

    gateway: str
    conn: str
    ref: str | None
    entry_id: bytes


class Sequencer:
    def __init__(self, pipeline: RedisClient, client_msg_id_ttl_seconds: int) -> None:
        self.pipeline = pipeline
        self.client_msg_id_ttl = client_msg_id_ttl_seconds

    async def mark_open(self, key: DialogKey) -> None:
        """Give a newly opened dialog its counter: from then on the counter's existence is
        what tells a send that the dialog exists, with no database round trip."""
        await self.pipeline.call("SET", keys.dialog_seq(key.id), 0, "NX")

    async def accept(
        self, key: DialogKey, sender: UserRef, text: str, client_msg_id: str, origin: Origin, *,
        floor: int | None = None,
    ) -> None:
        """Accept the message (or find the one this client_msg_id made); the script itself
        answers the sender and acknowledges the request."""
        # Per send only what varies is encoded (chat_service.send_frames); the script joins it.
        (message_before_seq, message_after_seq, event_before_seq, reply_before_message,
         reply_after_message) = send_pieces(
            str(uuid.uuid4()), key.id, sender, text, wire_time(datetime.now(UTC)),
            origin.conn, client_msg_id, origin.ref,
        )
        call = AcceptCall(
            seq_counter=keys.dialog_seq(key.id),
            idempotency_record=keys.client_msg_id(key.id, sender.id, client_msg_id),
            pending=keys.dialog_pending(key.id),
            lo_channel=keys.user_channel(key.lo),
            hi_channel=keys.user_channel(key.hi),
            gateway_channel=keys.gateway_channel(origin.gateway),
            message_before_seq=message_before_seq,
            message_after_seq=message_after_seq,
            event_before_seq=event_before_seq,
            reply_before_message=reply_before_message,
            reply_after_message=reply_after_message,
            idempotency_ttl=self.client_msg_id_ttl,
            seq_floor="" if floor is None else floor,
            request_entry_id=origin.entry_id,
        )
        outcome = await self.pipeline.eval_script(SHA, SCRIPT, keys=call.keys(), args=call.args())
        if outcome == -1:
            raise FloorNeeded(key.id)
