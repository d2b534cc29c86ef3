"""Reading a dialog's messages from both places they live: the table (stored) and the Redis
pending set (sent, not yet stored).

The pending set is read first, together with the seq counter, in one transaction (MULTI): that fixes a
snapshot seq S. Every message with seq <= S is then either in the set as read, or was stored
before it left the set (the storage worker commits, then removes), so the table read that
follows sees it. Messages above S are left out, so a page never has a hole."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import msgspec

from chat_service import store
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient, first_error
from chatkit.wire import Message

_decode_message = msgspec.json.Decoder(Message).decode


class HistoryReader:
    def __init__(self, redis: RedisClient, partitions: Partitions, pool: asyncpg.Pool) -> None:
        self.redis = redis
        self.partitions = partitions
        self.pool = pool

    async def page(self, key: DialogKey, *, before: int | None, limit: int) -> list[Message]:
        """The `limit` newest messages with seq < before, oldest first."""
        top = "+inf" if before is None else f"({before}"
        raw_seq, pending = await self._snapshot_read(
            key, ("ZREVRANGEBYSCORE", self._pending(key), top, "-inf", "LIMIT", 0, limit)
        )
        snapshot = _snapshot(raw_seq)
        bound = min(before if before is not None else math.inf, snapshot + 1)
        stored = await store.stored_messages(
            self.pool, key, after=0, before=_sql_bound(bound), limit=limit, newest=True
        )
        return _merge(stored, pending, snapshot)[-limit:]

    async def after(self, key: DialogKey, *, after: int, limit: int) -> tuple[list[Message], int | None]:
        """The `limit` oldest messages with seq > after, oldest first, and the snapshot seq
        (None when Redis has no counter for the dialog)."""
        raw_seq, pending = await self._snapshot_read(
            key, ("ZRANGEBYSCORE", self._pending(key), f"({after}", "+inf", "LIMIT", 0, limit)
        )
        snapshot = _snapshot(raw_seq)
        stored = await store.stored_messages(
            self.pool, key, after=after, before=_sql_bound(snapshot + 1), limit=limit, newest=False
        )
        messages = _merge(stored, pending, snapshot)[:limit]
        return messages, None if math.isinf(snapshot) else int(snapshot)

    def _pending(self, key: DialogKey) -> str:
        return keys.dialog_pending(self.partitions.dialog_tag(key), key.id)

    async def _snapshot_read(self, key: DialogKey, pending_range: tuple[Any, ...]) -> tuple[bytes | None, list[bytes]]:
        """The seq counter and a range of the pending set, read together."""
        seq_counter = keys.dialog_seq(self.partitions.dialog_tag(key), key.id)
        replies = await self.redis.transaction(("GET", seq_counter), pending_range)
        if (error := first_error(replies)) is not None:
            raise error
        raw_seq, pending = replies
        return raw_seq, pending


def _snapshot(raw_seq: bytes | None) -> float:
    # No counter: Redis does not know the dialog (or lost it); the table alone is the truth.
    return math.inf if raw_seq is None else int(raw_seq)


def _sql_bound(bound: float) -> int:
    return 2**62 if math.isinf(bound) else int(bound)


def _merge(stored: list[Message], pending: list[bytes], snapshot: float) -> list[Message]:
    by_seq = {message.seq: message for message in stored}
    for raw in pending:
        message = _decode_message(raw)
        # The stored copy wins: it carries the sender's current name.
        by_seq.setdefault(message.seq, message)
    return [by_seq[seq] for seq in sorted(by_seq) if seq <= snapshot]
