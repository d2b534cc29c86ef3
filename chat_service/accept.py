"""accept.lua and its call: the script, its digest, and its KEYS and ARGV by name. The fields of
:class:`AcceptCall` are the script's, in the script's order (its ``local`` lines name them the
same; tests/test_send_frames.py holds the two together)."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Literal

import msgspec
from msgspec.structs import astuple

from chat_service.send_frames import EVENT_AFTER_SEQ, EVENT_BEFORE_MESSAGE
from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD

# The script as the file has it, starting '#!lua' (Redis 7+ / Valkey: the server checks that
# its keys are declared and share a slot); PLAIN without that line, for an older server.
SCRIPT = resources.files("chat_service").joinpath("accept.lua").read_text()
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
PLAIN_SCRIPT = SCRIPT.split("\n", 1)[1]
PLAIN_SHA = hashlib.sha1(PLAIN_SCRIPT.encode()).hexdigest()


class AcceptCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One accept.lua call: the KEYS fields, then the ARGV fields (from ``lo_channel``).
    What is the same for every send is a default, set here once."""

    # KEYS
    seq_counter: str
    idempotency_record: str
    pending: str
    messages_stream: str
    request_stream: str
    # ARGV
    lo_channel: str
    hi_channel: str
    gateway_channel: str
    message_before_seq: bytes
    message_after_seq: bytes
    event_before_message: bytes = EVENT_BEFORE_MESSAGE
    event_before_seq: bytes
    event_after_seq: bytes = EVENT_AFTER_SEQ
    reply_before_message: bytes
    reply_after_message: bytes
    idempotency_ttl: int
    # The last stored seq, once looked up (after the script returned -1); "" until then.
    seq_floor: int | Literal[""] = ""
    entry_field: bytes = ENTRY_FIELD
    request_group: str = keys.CHAT_GROUP
    request_entry_id: bytes
    message_id: str

    def keys(self) -> tuple[str, ...]:
        values: tuple[str, ...] = astuple(self)[:_KEY_COUNT]
        return values

    def args(self) -> tuple[bytes | int | str, ...]:
        values: tuple[bytes | int | str, ...] = astuple(self)[_KEY_COUNT:]
        return values


_KEY_COUNT = AcceptCall.__struct_fields__.index("lo_channel")
KEY_FIELDS = AcceptCall.__struct_fields__[:_KEY_COUNT]
ARG_FIELDS = AcceptCall.__struct_fields__[_KEY_COUNT:]
