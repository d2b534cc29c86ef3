"""Turning stream entries into per-dialog batches of rows (pure: no I/O).

Each entry holds one :class:`chatkit.wire.Message` as JSON. Everything a row needs is checked
here, before any SQL runs, so that a malformed entry is recognised as such (and parked) instead
of surfacing later as a database or driver error that might pass for an outage.

The entry is decoded straight into the row's types (UUID, datetime, ranged integers) by
msgspec, in C: per entry this is the worker's hottest code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from chatkit.dialogs import BadDialogId, DialogKey
from chatkit.streams import Entry

# The ranges of the table's bigint seq and integer sender_id. asyncpg would refuse an
# out-of-range value before sending the batch (chatkit.db.ValueRefused), and the whole batch
# would be split dialog by dialog, row by row, to find it; refused here, it is parked at once.
BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Int = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


class BadEntry(ValueError):
    """An entry that can never be stored, whatever is retried."""


# The structs hold no references back, so they cannot form cycles: untracked by the garbage
# collector, the thousands alive during a batch cost no collection time.
class Sender(msgspec.Struct, gc=False):
    id: Int


class Row(msgspec.Struct, gc=False):
    """The stored columns of a :class:`chatkit.wire.Message` (other fields are ignored)."""

    id: uuid.UUID
    dialog_id: str
    seq: BigInt
    sender: Sender
    text: str
    sent_at: datetime


_decode_row = msgspec.json.Decoder(Row).decode


class Item(msgspec.Struct, frozen=True, gc=False):
    entry: Entry
    row: Row


@dataclass(slots=True)
class DialogBatch:
    key: DialogKey
    items: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class Grouped:
    # One per dialog, ordered by dialog: concurrent batches then lock tables in the same order.
    batches: list[DialogBatch]
    # Entries that cannot be decoded, with why.
    bad: list[tuple[Entry, str]]


def decode(data: bytes) -> Row:
    try:
        row = _decode_row(data)
    except msgspec.DecodeError as exc:
        raise BadEntry(f"undecodable message: {exc}") from exc
    if row.sent_at.tzinfo is None:
        # The wire promises UTC; a timestamp without an offset is read as UTC rather than as
        # whatever zone the database session happens to use.
        row.sent_at = row.sent_at.replace(tzinfo=UTC)
    return row


def group(entries: list[Entry]) -> Grouped:
    """Decode entries and group them by dialog, keeping stream order within each dialog."""
    batches: dict[str, DialogBatch] = {}
    bad: list[tuple[Entry, str]] = []
    for entry in entries:
        try:
            row = decode(entry.data)
            batch = batches.get(row.dialog_id) or _new_batch(batches, row.dialog_id)
        except BadEntry as exc:
            bad.append((entry, str(exc)))
            continue
        batch.items.append(Item(entry, row))
    return Grouped(sorted(batches.values(), key=lambda b: b.key), bad)


def _new_batch(batches: dict[str, DialogBatch], dialog_id: str) -> DialogBatch:
    try:
        key = DialogKey.parse(dialog_id)
    except BadDialogId as exc:
        raise BadEntry(f"undecodable message: {exc}") from exc
    batch = batches[dialog_id] = DialogBatch(key)
    return batch
