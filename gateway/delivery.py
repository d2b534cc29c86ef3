"""What one connection is owed of live events and `sync` replies: pure bookkeeping, no socket.

Events and sync replies go in; what comes out is which frames to write, in order, or the signal
that the connection overflowed (docs/PROTOCOL.md, "Sync"; docs/DELIVERY.md):

- While a `sync` is in flight, live events are held (at most ``hold_limit``; one more is an
  overflow: the client is too slow, close it with 4008). When the last sync in flight is
  answered they follow its reply, minus those the reply already carried.
- Nothing reaches a connection twice: per dialog, the seq it is complete up to (from the sync
  replies) and the seqs it got live above that are remembered; a live event at or below the
  first, or among the second, is a duplicate, and a sync reply is written without them.

Kept per connection, and only once needed (gateway/connections.py keeps the slot): an idle
connection has none, and this one's containers are created on first use."""

from __future__ import annotations

import enum

import msgspec

from chatkit.wire import Synced

# Live seqs remembered per dialog on one connection, to keep a sync from repeating them.
LIVE_SEQS_KEPT = 1024


class Verdict(enum.Enum):
    SEND = "send"  # write the event's frame now
    DUPLICATE = "duplicate"  # the connection has it already: drop it
    HELD = "held"  # a sync is in flight: it comes out with the sync's reply
    OVERFLOW = "overflow"  # too many held: the client is too slow, close it


_Held = tuple[bytes, str | None, int | None]


class DeliveryState:
    __slots__ = ("_complete", "_held", "_hold_limit", "_live", "_syncs")

    def __init__(self, hold_limit: int) -> None:
        self._hold_limit = hold_limit
        self._syncs = 0
        self._held: list[_Held] | None = None
        # dialog id -> the seq this connection is complete up to (the sync replies' positions).
        self._complete: dict[str, int] | None = None
        # dialog id -> seqs pushed live above that.
        self._live: dict[str, set[int]] | None = None

    @property
    def syncing(self) -> bool:
        return self._syncs > 0

    def begin_sync(self) -> None:
        self._syncs += 1

    def live(self, frame: bytes, dialog_id: str | None, seq: int | None) -> Verdict:
        """One live event (``dialog_id``/``seq`` None for an event that is no dialog's message)."""
        if self._syncs:
            held = self._held
            if held is None:
                held = self._held = []
            if len(held) >= self._hold_limit:
                return Verdict.OVERFLOW
            held.append((frame, dialog_id, seq))
            return Verdict.HELD
        if dialog_id is None or seq is None:
            return Verdict.SEND
        if self._complete is not None and seq <= self._complete.get(dialog_id, 0):
            return Verdict.DUPLICATE
        if self._live is None:
            self._live = {}
        seen = self._live.setdefault(dialog_id, set())
        if seq in seen:
            return Verdict.DUPLICATE
        if len(seen) >= LIVE_SEQS_KEPT:
            # Forget the oldest half: a client this far from a sync has older gaps to fill.
            for old in sorted(seen)[: LIVE_SEQS_KEPT // 2]:
                seen.discard(old)
        seen.add(seq)
        return Verdict.SEND

    def sync_reply(self, frame: bytes, positions: dict[str, int]) -> list[bytes]:
        """The frames to write for one sync's reply: the reply minus what this connection got
        live, then (if no other sync is in flight) the held events it did not cover."""
        complete = self._complete if self._complete is not None else {}
        live = self._live if self._live is not None else {}
        frames = [without_delivered(frame, complete, live)]
        for dialog_id, seq in positions.items():
            upto = complete[dialog_id] = max(seq, complete.get(dialog_id, 0))
            seen = live.get(dialog_id)
            if seen is not None:
                seen.difference_update([s for s in seen if s <= upto])
                if not seen:
                    del live[dialog_id]
        if complete:
            self._complete = complete
        self._live = live or None
        frames.extend(self._release())
        return frames

    def sync_failed(self) -> list[bytes]:
        """A sync that will get no reply (it never reached a service): what it held."""
        return self._release()

    def _release(self) -> list[bytes]:
        self._syncs = max(0, self._syncs - 1)
        if self._syncs or self._held is None:
            return []
        held, self._held = self._held, None
        return [frame for frame, dialog_id, seq in held if self.live(frame, dialog_id, seq) is Verdict.SEND]


_decode_synced = msgspec.json.Decoder(Synced).decode
_encode = msgspec.json.Encoder().encode


def without_delivered(frame: bytes, complete: dict[str, int], live: dict[str, set[int]]) -> bytes:
    """A sync reply minus the messages a connection already has."""
    if not live and not complete:
        return frame
    try:
        synced = _decode_synced(frame)
    except msgspec.ValidationError:
        return frame  # an error reply
    kept = [
        m for m in synced.messages
        if m.seq > complete.get(m.dialog_id, 0) and m.seq not in live.get(m.dialog_id, ())
    ]
    if len(kept) == len(synced.messages):
        return frame
    synced.messages = kept
    return _encode(synced)
