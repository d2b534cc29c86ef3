"""Turning stream entries into per-dialog batches of rows (pure: no I/O).

Each entry holds one :class:`chatkit.wire.Message` as JSON. Everything a row needs is checked
here, before any SQL runs, so that a malformed entry is recognised as such (and parked) instead
of surfacing later as a database or driver error that might pass for an outage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from chatkit.dialogs import BadDialogId, DialogKey
from chatkit.streams import Entry
from chatkit.wire import Message

_decode_message = msgspec.json.Decoder(Message).decode

# The ranges of the table's bigint seq and integer sender_id: an out-of-range value would make
# the driver raise a client-side error (an InterfaceError) that passes for a lost connection.
_BIGINT = range(-(2**63), 2**63)
_INT = range(-(2**31), 2**31)


class BadEntry(ValueError):
    """An entry that can never be stored, whatever is retried."""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    id: uuid.UUID
    sent_at: datetime
    sender_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Item:
    entry: Entry
    row: Row


@dataclass(slots=True)
class DialogBatch:
    key: DialogKey
    items: list[Item] = field(default_factory=list)

    def columns(self) -> tuple[list[int], list[uuid.UUID], list[datetime], list[int], list[str]]:
        """The rows as the five arrays the unnest() insert takes."""
        rows = [item.row for item in self.items]
        return (
            [r.seq for r in rows],
            [r.id for r in rows],
            [r.sent_at for r in rows],
            [r.sender_id for r in rows],
            [r.text for r in rows],
        )


@dataclass(slots=True)
class Grouped:
    batches: list[DialogBatch]
    # Entries that cannot be decoded, with why.
    bad: list[tuple[Entry, str]]


def decode(data: bytes) -> tuple[DialogKey, Row]:
    try:
        message = _decode_message(data)
        key = DialogKey.parse(message.dialog_id)
        row = Row(
            seq=message.seq,
            id=uuid.UUID(message.id),
            sent_at=_timestamp(message.sent_at),
            sender_id=message.sender.id,
            text=message.text,
        )
    except (msgspec.DecodeError, BadDialogId, ValueError) as exc:
        raise BadEntry(f"undecodable message: {exc}") from exc
    if row.seq not in _BIGINT:
        raise BadEntry(f"undecodable message: seq {row.seq} out of range")
    if row.sender_id not in _INT:
        raise BadEntry(f"undecodable message: sender id {row.sender_id} out of range")
    return key, row


def group(entries: list[Entry]) -> Grouped:
    """Decode entries and group them by dialog, keeping stream order within each dialog."""
    batches: dict[DialogKey, DialogBatch] = {}
    bad: list[tuple[Entry, str]] = []
    for entry in entries:
        try:
            key, row = decode(entry.data)
        except BadEntry as exc:
            bad.append((entry, str(exc)))
            continue
        batches.setdefault(key, DialogBatch(key)).items.append(Item(entry, row))
    return Grouped(list(batches.values()), bad)


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    # The wire promises UTC; a timestamp without an offset is read as UTC rather than as
    # whatever zone the database session happens to use.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
