"""The seam between a `sync` reply and live messages on one connection (docs/PROTOCOL.md,
"Sync"): live events held while a sync is in flight, and the reply filtered against what the
connection already got live."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from chatkit.wire import Synced


@dataclass(frozen=True, slots=True)
class Held:
    frame: bytes
    dialog_id: str | None
    seq: int | None


class SyncGate:
    """Closes the seam between a `sync` reply and live messages. Live message events that
    arrive while a sync is in flight are held; when the reply comes, those it already covered
    (seq at or below its position for the dialog) are dropped and the rest follow it."""

    # One per connection that has synced at least once: no per-instance dict.
    __slots__ = ("_held", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self._held: list[Held] = []

    @property
    def holding(self) -> bool:
        return self.in_flight > 0

    def begin(self) -> None:
        self.in_flight += 1

    def hold(self, item: Held, limit: int) -> bool:
        if len(self._held) >= limit:
            return False
        self._held.append(item)
        return True

    def release(self, positions: dict[str, int]) -> list[Held]:
        """Events to send now that one sync has been answered (none while others are out)."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight:
            return []
        held, self._held = self._held, []
        return [
            item for item in held
            if item.seq is None or item.dialog_id is None or item.seq > positions.get(item.dialog_id, -1)
        ]


_decode_synced = msgspec.json.Decoder(Synced).decode
_encode = msgspec.json.Encoder().encode


def without_held(frame: bytes, complete: dict[str, int], live: dict[str, set[int]]) -> bytes:
    """The sync reply minus the messages this connection already has."""
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
