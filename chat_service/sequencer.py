"""Turning a send into a message with the dialog's next seq, through one Lua script
(accept.lua): counter, idempotency record, pending set, messages stream, fan-out, the sender's
reply and the request's acknowledgement move together or not at all.

The idempotency record keeps only the message's seq and id, for CHAT_CLIENT_MSG_ID_TTL_SECONDS
(minutes): a retry is answered with the message from the pending set by the script, or, once
the message is stored and has left the set, from the table here (the same ``sent`` bytes: the
reply is cut from the same schemas, and the stored values are the ones sent)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from chat_service.accept import PLAIN_SCRIPT, PLAIN_SHA, SCRIPT, SHA, AcceptCall
from chat_service.send_frames import send_pieces
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.errors import Unavailable
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient, ReplyError, first_error
from chatkit.wire import Message, UserRef, wire_time

# The stored message of a dialog with a given seq, or None.
StoredLookup = Callable[[DialogKey, int], Awaitable[Message | None]]

_encode = msgspec.json.Encoder().encode


class FloorNeeded(Exception):
    """The dialog has no counter in Redis: it is unknown here, or Redis lost it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the send came from, so the script can answer it and acknowledge it."""

    gateway: str
    conn: str
    ref: str | None
    entry_id: bytes
    # The request stream the entry is on: the dialog's partition (the gateway routes a send so).
    stream: str
    # The gateway's request number (envelopes.Request.request), said back in the reply.
    request: int = 0


class Sequencer:
    def __init__(
        self, pipeline: RedisClient, partitions: Partitions, client_msg_id_ttl_seconds: int, stored: StoredLookup,
    ) -> None:
        self.pipeline = pipeline
        self.partitions = partitions
        self.client_msg_id_ttl = client_msg_id_ttl_seconds
        self.stored = stored
        # The '#!lua' script until a server too old for it says so (chat_service.accept).
        self.script, self.sha = SCRIPT, SHA

    async def mark_open(self, key: DialogKey) -> None:
        """Give a newly opened dialog its counter: from then on the counter's existence is
        what tells a send that the dialog exists, with no database round trip."""
        await self.pipeline.call("SET", keys.dialog_seq(self.partitions.dialog_tag(key), key.id), 0, "NX")

    async def accept(
        self, key: DialogKey, sender: UserRef, text: str, client_msg_id: str, origin: Origin, *,
        floor: int | None = None,
    ) -> None:
        """Accept the message (or find the one this client_msg_id made); the sender is
        answered and the request acknowledged, by the script or (a stored repeat) here."""
        # Per send only what varies is encoded (chat_service.send_frames); the script joins it.
        message_id = str(uuid.uuid4())
        (message_before_seq, message_after_seq, event_before_seq, reply_before_message,
         reply_after_message) = send_pieces(
            message_id, key.id, sender, text, wire_time(datetime.now(UTC)),
            origin.conn, client_msg_id, origin.ref, origin.request,
        )
        tag = self.partitions.dialog_tag(key)
        call = AcceptCall(
            seq_counter=keys.dialog_seq(tag, key.id),
            idempotency_record=keys.client_msg_id(tag, key.id, sender.id, client_msg_id),
            pending=keys.dialog_pending(tag, key.id),
            messages_stream=keys.messages(tag),
            request_stream=origin.stream,
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
            message_id=message_id,
        )
        outcome = await self._run(call)
        if outcome == -1:
            raise FloorNeeded(key.id)
        if isinstance(outcome, list):
            seq, stored_id = int(outcome[0]), outcome[1].decode()
            await self._answer_stored(call, key, seq, stored_id)

    async def _run(self, call: AcceptCall) -> object:
        try:
            return await self.pipeline.eval_script(self.sha, self.script, keys=call.keys(), args=call.args())
        except ReplyError as exc:
            # Before Redis 7 a '#!' line does not compile; nothing ran. Once, then plainly.
            if self.script is PLAIN_SCRIPT or "compiling" not in str(exc).lower():
                raise
            self.script, self.sha = PLAIN_SCRIPT, PLAIN_SHA
            return await self.pipeline.eval_script(self.sha, self.script, keys=call.keys(), args=call.args())

    async def _answer_stored(self, call: AcceptCall, key: DialogKey, seq: int, message_id: str) -> None:
        """A repeat of a message that has been stored: the same reply the script would give."""
        message = await self.stored(key, seq)
        if message is None or message.id != message_id:
            # Stored before it left the pending set, so only a table changed behind our back
            # gets here: the client is told to try again (never given a second message).
            found = "nothing" if message is None else f"message {message.id}"
            raise Unavailable(
                f"dialog {key.id}: a resend's record names message {message_id} at seq {seq}, "
                f"expected it stored, found {found}"
            )
        reply = b"".join((call.reply_before_message, _encode(message), call.reply_after_message))
        replies = await self.pipeline.transaction(
            ("PUBLISH", call.gateway_channel, reply),
            ("XACK", call.request_stream, call.request_group, call.request_entry_id),
        )
        if (error := first_error(replies)) is not None:
            raise error

