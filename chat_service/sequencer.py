"""Turning a send into a message with the dialog's next seq, through one Lua script
(accept.lua): counter, idempotency record, pending set, messages stream and fan-out move
together or not at all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
from redis.asyncio import Redis

from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD
from chatkit.wire import Message, UserRef

_encode = msgspec.json.Encoder().encode
_decode_message = msgspec.json.Decoder(Message).decode

# The seq placeholder the message template is split at; msgspec writes fields in declaration
# order, and the only fields before `seq` are a uuid and a dialog id, which cannot contain it.
_SEQ_MARK = b'"seq":0,'


class FloorNeeded(Exception):
    """The dialog has no counter in Redis: it is unknown here, or Redis lost it."""


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    # False when this client_msg_id had already produced the message.
    new: bool


class Sequencer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(resources.files("chat_service").joinpath("accept.lua").read_text())

    async def mark_open(self, key: DialogKey) -> None:
        """Give a newly opened dialog its counter: from then on the counter's existence is
        what tells a send that the dialog exists, with no database round trip."""
        await self.redis.set(keys.dialog_seq(key.id), 0, nx=True)

    async def accept(
        self, key: DialogKey, sender: UserRef, text: str, client_msg_id: str, *,
        skip_conn: str, floor: int | None = None,
    ) -> Accepted:
        message = Message(
            id=str(uuid.uuid4()), dialog_id=key.id, seq=0, sender=sender, text=text,
            sent_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        before, after = _encode(message).split(_SEQ_MARK, 1)
        event_before = b'{"frame":{"type":"message","message":'
        # The event repeats the dialog and seq outside the frame, so gateways can order and
        # de-duplicate without decoding the message.
        event_after = (
            b'},"skip_conn":' + _encode(skip_conn) + b',"dialog_id":' + _encode(key.id) + b',"seq":'
        )
        result: list[Any] = await self._script(
            keys=[
                keys.dialog_seq(key.id),
                keys.client_msg_id(key.id, sender.id, client_msg_id),
                keys.dialog_pending(key.id),
                keys.MESSAGES,
                keys.user_channel(key.lo),
                keys.user_channel(key.hi),
            ],
            args=[
                before + b'"seq":', b"," + after, event_before, event_after,
                keys.CLIENT_MSG_ID_TTL_SECONDS, "" if floor is None else floor, ENTRY_FIELD,
            ],
        )
        status, body = int(result[0]), result[1]
        if status == -1:
            raise FloorNeeded(key.id)
        return Accepted(message=_decode_message(body), new=status == 1)
