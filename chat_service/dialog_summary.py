"""The `dialogs` reply: a page of the caller's dialogs by activity (chat_service/dialog_list.py),
each with its peer (online or not), last message, unread count and both read marks.

A fixed number of round trips whatever the number of dialogs: the page (one query), the read
marks (one query), one Lua script reading every dialog's seq counter and pending set (messages
sent, not yet stored), one presence call for the peers, and one query (a server-side function)
for the newest stored message and the stored unread count of each dialog.

Redis is read before the tables, as history does (chat_service/history.py): each pending set's
lowest seq B is fixed first; every message below B left the set only after it was stored, so
the table is read below B and the pending set from B, and no message is missed or counted
twice. Right after a send, the message is in the pending set: counted at once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import msgspec

from chat_service import reads
from chat_service.dialog_list import Cursor, DialogActivity, dialogs_by_activity
from chatkit import keys, presence
from chatkit.errors import RequestError
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.wire import DialogSummary, Message, Peer, UserRef, wire_time

_decode_message = msgspec.json.Decoder(Message).decode

# Dialogs per reply: the default and the cap (docs/PROTOCOL.md). Each dialog carries its last
# message, up to 4096 characters: 100 of them keep a reply well under a client's 1 MiB frame,
# and the cost of a reply (one table visit per dialog, at most) bounded whatever the user has.
PAGE_DEFAULT = 100
PAGE_MAX = 100
_NO_BOUND = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS: per dialog its seq counter and pending set. ARGV: per dialog the peer's id and the
# caller's read mark. Per dialog: {counter, lowest pending seq, newest pending message, pending
# messages of the peer above the mark} (false where there is none).
STATE = """
local out = {}
for d = 1, #KEYS / 2 do
  local pending = KEYS[2 * d]
  local low = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
  local top = false
  local unread = 0
  if low[1] then
    top = redis.call('ZRANGE', pending, -1, -1)[1]
    local peer = tonumber(ARGV[2 * d - 1])
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', pending, '(' .. ARGV[2 * d], '+inf')) do
      if cjson.decode(m)['sender']['id'] == peer then
        unread = unread + 1
      end
    end
  end
  out[d] = {redis.call('GET', KEYS[2 * d - 1]) or false, low[2] or false, top, unread}
end
return out
"""
STATE_SHA = hashlib.sha1(STATE.encode()).hexdigest()

TAILS = (
    "SELECT t.k, t.m_seq, t.m_id, t.m_sent_at, t.m_sender, t.m_text, t.unread, u.username "
    "FROM chat_dialog_tails_v1($1::int[], $2::int[], $3::int[], $4::bigint[], $5::bigint[], $6::boolean[]) t "
    "LEFT JOIN users u ON u.id = t.m_sender ORDER BY t.k"
)


def encode_cursor(cursor: Cursor) -> str:
    micros = (cursor.last_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{cursor.peer_id}"


def decode_cursor(text: str) -> Cursor:
    micros, sep, peer = text.partition(".")
    if not sep or not micros.lstrip("-").isdigit() or not peer.isdigit():
        raise RequestError("invalid", f"cursor: expected a next_cursor from a dialogs reply, got {text!r}")
    return Cursor(_EPOCH + timedelta(microseconds=int(micros)), int(peer))


async def dialog_page(
    pool: asyncpg.Pool, redis: RedisClient, partitions: Partitions, me: int, *, limit: int | None,
    cursor: str | None,
) -> tuple[list[DialogSummary], str | None]:
    """One page of ``me``'s dialogs, newest activity first, and the cursor of the next page."""
    after = decode_cursor(cursor) if cursor is not None else None
    want = min(PAGE_MAX, PAGE_DEFAULT if limit is None else limit)
    page = await dialogs_by_activity(pool, me, limit=want + 1, after=after)
    more = len(page) > want
    page = page[:want]
    if not page:
        return [], None
    marks = await reads.marks(pool, [d.key for d in page])
    mine = [marks.get(d.key.id, {}).get(str(me), 0) for d in page]
    state = cast(list[list[Any]], await redis.eval_script(
        STATE_SHA, STATE,
        keys=[k for d in page for k in (keys.dialog_seq(partitions.dialog_tag(d.key), d.key.id),
                                        keys.dialog_pending(partitions.dialog_tag(d.key), d.key.id))],
        args=[a for d, mark in zip(page, mine, strict=True) for a in (d.peer.id, mark)],
    ))
    online = await presence.online(redis, [d.peer.id for d in page])
    bounds: list[int] = []
    tops: list[Message | None] = []
    for counter, low, top, _ in state:
        if low is not None:
            bounds.append(int(float(low)))
        elif counter is not None:
            bounds.append(int(counter) + 1)
        else:
            bounds.append(_NO_BOUND)
        tops.append(None if top is None else _decode_message(top))
    tails = await pool.fetch(
        TAILS, [d.key.lo for d in page], [d.key.hi for d in page], [d.peer.id for d in page],
        mine, bounds, [top is None for top in tops],
    )
    summaries = [
        _summary(d, marks.get(d.key.id, {}), top, int(s[3]), tail, is_online)
        for d, top, s, tail, is_online in zip(page, tops, state, tails, online, strict=True)
    ]
    return summaries, encode_cursor(page[-1].cursor) if more else None


def _summary(
    d: DialogActivity, marks: dict[str, int], top: Message | None, pending_unread: int,
    tail: asyncpg.Record, online: bool,
) -> DialogSummary:
    last = top
    if last is None and tail["m_seq"] is not None:
        last = Message(
            id=str(tail["m_id"]), dialog_id=d.key.id, seq=tail["m_seq"],
            sender=UserRef(id=tail["m_sender"], username=tail["username"] or ""), text=tail["m_text"],
            sent_at=wire_time(tail["m_sent_at"]),
        )
    return DialogSummary(
        id=d.key.id,
        peer=Peer(id=d.peer.id, username=d.peer.username, online=online),
        last_message=last,
        unread=int(tail["unread"]) + pending_unread,
        reads={str(d.key.lo): marks.get(str(d.key.lo), 0), str(d.key.hi): marks.get(str(d.key.hi), 0)},
    )
