"""Typing events: to the peer's connections and the sender's other ones, at most
``typing_per_second`` per user and dialog (the rest dropped silently), never stored. One Lua
script: membership (the dialog's seq counter), the rate gate and both publishes."""

from __future__ import annotations

import hashlib

import msgspec

from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.envelopes import UserEvent
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.wire import TypingEvent

_encode = msgspec.json.Encoder().encode

# KEYS: seq counter, rate gate, peer channel, own channel. ARGV: gate ms, peer event, own
# event, whether to trust membership without the counter ("1": the database said so).
# Returns -1 when the dialog is unknown here, 0 when the gate is shut, 1 when published.
SCRIPT = """
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if not redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then
  return 0
end
redis.call('PUBLISH', KEYS[3], ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[3])
return 1
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class Unknown(Exception):
    """Redis has no counter for the dialog: ask the database whether it exists."""


async def forward(
    redis: RedisClient, partitions: Partitions, key: DialogKey, user_id: int, conn: str, per_second: int, *,
    known: bool = False,
) -> bool:
    """Publish a typing event unless the gate is shut; True when it went out."""
    frame = msgspec.Raw(_encode(TypingEvent(dialog_id=key.id, user_id=user_id)))
    peer_event = _encode(UserEvent(frame=frame, ephemeral=True))
    own_event = _encode(UserEvent(frame=frame, skip_conn=conn, ephemeral=True))
    gate_ms = max(1, 1000 // max(1, per_second))
    outcome = await redis.eval_script(
        SHA, SCRIPT,
        keys=(keys.dialog_seq(partitions.dialog_tag(key), key.id), keys.typing_gate(key.id, user_id),
              keys.user_channel(key.peer_of(user_id)), keys.user_channel(user_id)),
        args=(gate_ms, peer_event, own_event, "1" if known else "0"),
    )
    if outcome == -1:
        raise Unknown(key.id)
    return bool(outcome == 1)
