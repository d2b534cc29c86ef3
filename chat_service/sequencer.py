"""Turning a send into a message with the dialog's next seq, through one Lua script
(accept.lua): counter, idempotency record, pending set, messages stream, fan-out, the sender's
reply and the request's acknowledgement move together or not at all."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import msgspec

from chatkit import keys
from chatkit.autopipeline import AutoPipeline
from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD
from chatkit.wire import Message, UserRef, wire_time

_encode = msgspec.json.Encoder().encode

# The seq placeholder the message template is split at; msgspec writes fields in declaration
# order, and the only fields before `seq` are a uuid and a dialog id, which cannot contain it.
_SEQ_MARK = b'"seq":0,'
_SCRIPT = resources.files("chat_service").joinpath("accept.lua").read_text()
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


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
    def __init__(self, pipeline: AutoPipeline, client_msg_id_ttl_seconds: int) -> None:
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
        message = Message(
            id=str(uuid.uuid4()), dialog_id=key.id, seq=0, sender=sender, text=text,
            sent_at=wire_time(datetime.now(UTC)),
        )
        before, after = _encode(message).split(_SEQ_MARK, 1)
        # The event repeats the dialog and seq outside the frame, so gateways can order and
        # de-duplicate without decoding the message.
        event_before = b'{"frame":{"type":"message","message":'
        event_after = (
            b'},"skip_conn":' + _encode(origin.conn) + b',"dialog_id":' + _encode(key.id) + b',"seq":'
        )
        ref = b"" if origin.ref is None else b',"ref":' + _encode(origin.ref)
        reply_before = (
            b'{"conn":' + _encode(origin.conn) + b',"answers":"send","frame":{"type":"sent","client_msg_id":'
            + _encode(client_msg_id) + ref + b',"message":'
        )
        outcome = await self.pipeline.eval_script(
            _SHA, _SCRIPT,
            keys=[
                keys.dialog_seq(key.id),
                keys.client_msg_id(key.id, sender.id, client_msg_id),
                keys.dialog_pending(key.id),
                keys.MESSAGES,
                keys.user_channel(key.lo),
                keys.user_channel(key.hi),
                keys.gateway_channel(origin.gateway),
                keys.CHAT_REQUESTS,
            ],
            args=[
                before + b'"seq":', b"," + after, event_before, event_after,
                self.client_msg_id_ttl, "" if floor is None else floor, ENTRY_FIELD,
                reply_before, b"}}", keys.CHAT_GROUP, origin.entry_id,
            ],
        )
        if outcome == -1:
            raise FloorNeeded(key.id)
