"""``python -m storage_worker.dead list|replay|drop``: the operator's view of ``chat:dead``.

An entry lands in the dead-letter stream when it kept failing (``CHAT_MAX_DELIVERIES``): a
message the storage worker could not write, or a request no service could answer. Each dead
entry keeps the stream it came from, its id there, the reason and the entry's own bytes.

- ``list``            every dead entry, oldest first: its id, where it came from, deliveries, reason;
- ``replay ID...``    put those entries back on the stream they came from (a new entry id there)
                      and remove them from ``chat:dead``, in one transaction each; ``--all`` for all;
- ``drop ID...``      remove them for good; ``--all`` for all.

Replaying is safe to repeat: the storage worker's writes are idempotent by seq, and a replayed
``send`` request finds its idempotency record. Only this project's own streams are replayed to.
Redis comes from ``CHAT_REDIS_URL``, as for every service."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD
from chatkit.partitions import Partitions
from chatkit.redis import REDIS_DOWN, RedisClient, first_error
from chatkit.settings import Settings


def replayable(partitions: Partitions) -> frozenset[str]:
    """The streams an entry may be replayed to: never one named only by the dead entry's own data."""
    return frozenset(
        name(tag) for tag in partitions.tags() for name in (keys.auth_requests, keys.chat_requests, keys.messages)
    )


# Entries read per XRANGE call when listing or taking --all.
PAGE = 500


@dataclass(frozen=True, slots=True)
class DeadEntry:
    id: str
    stream: str
    source_id: str
    reason: str
    deliveries: str
    data: bytes

    def line(self) -> str:
        return (f"{self.id}  from {self.stream} {self.source_id}  deliveries {self.deliveries}  "
                f"{len(self.data)} bytes  reason: {self.reason}")


def parse_entry(entry_id: bytes, fields: Sequence[bytes]) -> DeadEntry:
    """One XRANGE item of ``chat:dead`` (flat field/value list) as a :class:`DeadEntry`."""
    values = {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}

    def text(name: bytes) -> str:
        return values.get(name, b"").decode(errors="replace")

    return DeadEntry(
        id=entry_id.decode(), stream=text(b"stream"), source_id=text(b"id"), reason=text(b"reason"),
        deliveries=text(b"deliveries"), data=values.get(ENTRY_FIELD, b""),
    )


async def read_all(redis: RedisClient) -> list[DeadEntry]:
    entries: list[DeadEntry] = []
    start = "-"
    while True:
        page = await redis.call("XRANGE", keys.DEAD_LETTERS, start, "+", "COUNT", PAGE)
        entries.extend(parse_entry(entry_id, fields) for entry_id, fields in page)
        if len(page) < PAGE:
            return entries
        start = "(" + page[-1][0].decode()


async def read_some(redis: RedisClient, ids: Sequence[str]) -> list[DeadEntry]:
    """The named entries; an id that is not in ``chat:dead`` is an error naming it."""
    found: list[DeadEntry] = []
    for entry_id in ids:
        page = await redis.call("XRANGE", keys.DEAD_LETTERS, entry_id, entry_id)
        if not page:
            raise LookupError(f"no entry {entry_id!r} in {keys.DEAD_LETTERS}")
        found.extend(parse_entry(item_id, fields) for item_id, fields in page)
    return found


async def replay(redis: RedisClient, entry: DeadEntry, partitions: Partitions) -> str:
    """Back onto its stream and out of ``chat:dead`` together; returns the new entry id."""
    if entry.stream not in replayable(partitions):
        tag = "{t}"
        raise ValueError(
            f"entry {entry.id}: expected one of this project's streams ({keys.auth_requests(tag)}, "
            f"{keys.chat_requests(tag)} or {keys.messages(tag)}, for the {partitions.count} partitions of "
            f"CHAT_PARTITIONS), got {entry.stream!r}"
        )
    replies = await redis.transaction(
        ("XADD", entry.stream, "*", ENTRY_FIELD, entry.data),
        ("XDEL", keys.DEAD_LETTERS, entry.id),
    )
    if (error := first_error(replies)) is not None:
        raise error
    new_id: bytes = replies[0]
    return new_id.decode()


async def drop(redis: RedisClient, entry: DeadEntry) -> None:
    await redis.call("XDEL", keys.DEAD_LETTERS, entry.id)


async def main(argv: Sequence[str], settings: Settings) -> int:
    args = _parser().parse_args(argv)
    if args.command != "list" and not args.ids and not args.all:
        print(f"{args.command}: expected entry ids or --all, got neither", file=sys.stderr)
        return 2
    redis = RedisClient.from_url(settings.redis_url)
    partitions = Partitions(settings.partitions)
    try:
        if args.command == "list" or args.all:
            entries = await read_all(redis)
        else:
            entries = await read_some(redis, args.ids)
        if args.command == "list":
            for entry in entries:
                print(entry.line())
            print(f"{len(entries)} dead entries in {keys.DEAD_LETTERS}")
        elif args.command == "replay":
            for entry in entries:
                print(f"{entry.id} replayed to {entry.stream} as {await replay(redis, entry, partitions)}")
        else:
            for entry in entries:
                await drop(redis, entry)
                print(f"{entry.id} dropped")
        return 0
    except (LookupError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except REDIS_DOWN as exc:
        print(f"Redis unreachable at {redis.address}: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storage_worker.dead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "replay", "drop"])
    parser.add_argument("ids", nargs="*", help="dead entry ids (as `list` shows them)")
    parser.add_argument("--all", action="store_true", help="every dead entry")
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:], Settings.from_env())))
