"""Messages as chat_service puts them on the messages stream, for tests of what consumes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import redis.asyncio

from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD
from chatkit.wire import Message, UserRef, wire_time
from tests.support import layout

_encode = msgspec.json.Encoder().encode


def message(
    key: DialogKey, seq: int, sender: int, text: str | None = None, *,
    username: str | None = None, sent_at: datetime | None = None,
) -> Message:
    when = sent_at or datetime.now(UTC)
    return Message(
        id=str(uuid.uuid4()),
        dialog_id=key.id,
        seq=seq,
        sender=UserRef(id=sender, username=username or f"user{sender}"),
        text=f"message {seq} in {key.id}" if text is None else text,
        sent_at=wire_time(when),
    )


def encode(msg: Message) -> bytes:
    return _encode(msg)


async def publish(rds: redis.asyncio.Redis, msg: Message) -> bytes:
    """What chat_service's accept does for a new message, minus the counter and the fan-out:
    the message goes into its dialog's pending set and onto the messages stream."""
    data = encode(msg)
    async with rds.pipeline(transaction=True) as pipe:
        pipe.zadd(layout.pending(msg.dialog_id), {data: msg.seq})
        pipe.xadd(layout.messages(msg.dialog_id), {ENTRY_FIELD: data})
        _, entry_id = await pipe.execute()
    assert isinstance(entry_id, bytes)
    return entry_id


async def publish_raw(rds: redis.asyncio.Redis, data: bytes, stream: str = layout.MESSAGES[0]) -> bytes:
    """A stream entry with arbitrary content, as a buggy producer might write."""
    entry_id = await rds.xadd(stream, {ENTRY_FIELD: data})
    assert isinstance(entry_id, bytes)
    return entry_id
