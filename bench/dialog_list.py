"""``python -m bench.dialog_list``: latency of the `dialogs` request's work in chat_service
(chat_service.dialog_summary.dialog_page: the page, read marks, one Redis script, presence, the
last messages and unread counts) for one user with 10, 1,000 and 10,000 dialogs.

For each size, on a fresh embedded PostgreSQL and Valkey: user 1 gets N dialogs, each with
three stored messages (two from the peer, one from user 1, the dialogs row kept as the storage
worker keeps it) and a read mark of 1; one dialog in a hundred also has a message sent but not
stored (in its Redis pending set). Then it times the first page of 50 (what a client asks for)
and, for comparison, the whole list in one reply (no limit). Progress lines go to stdout;
results to ``bench-results/dialog-list-<time>.json``. Ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from chat_service.dialog_summary import dialog_page
from chatkit import db, keys
from chatkit.dialogs import DialogKey
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from chatkit.wire import Message, UserRef, wire_time
from devstack.embedded import start_postgres, start_valkey

_encode = msgspec.json.Encoder().encode
BATCH = 500


# The layout's default partitioning (CHAT_PARTITIONS): the bench's own servers use it.
partitions = Partitions(Settings().partitions)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "max_ms": round(ordered[-1] * 1000, 2), "calls": len(ordered)}


async def timed(calls: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await call()  # warm: prepared statements, script cache
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


async def populate(admin: asyncpg.Connection, redis: RedisClient, n: int, progress: Callable[[str], None]) -> None:
    await admin.copy_records_to_table(
        "users", columns=["id", "username", "email", "password_hash"],
        records=[(u, f"u{u}", f"u{u}@bench.example.org", "x") for u in range(1, n + 2)])
    await admin.execute("SELECT setval('users_id_seq', $1)", n + 1)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(2, n + 2, BATCH):
        peers = range(first, min(n + 2, first + BATCH))
        statements = []
        for peer in peers:
            key = DialogKey(1, peer)
            statements.append(db.dialog_table_ddl(key) + ";")
            at = base + timedelta(seconds=peer)
            rows = ", ".join(
                f"({seq}, '{uuid.uuid4()}', '{(at + timedelta(milliseconds=seq)).isoformat()}', {sender}, "
                f"'message {seq}')"
                for seq, sender in ((1, peer), (2, 1), (3, peer))
            )
            statements.append(f"INSERT INTO {key.table} (seq, id, sent_at, sender_id, text) VALUES {rows};")
            statements.append(
                f"INSERT INTO dialogs (lo, hi, last_seq, last_at, lo_read) VALUES (1, {peer}, 3, "
                f"'{(at + timedelta(milliseconds=3)).isoformat()}', 1);"
            )
        async with admin.transaction():
            await admin.execute("\n".join(statements))
        for peer in peers:
            key = DialogKey(1, peer)
            if peer % 100 == 0:
                pending = Message(id=str(uuid.uuid4()), dialog_id=key.id, seq=4,
                                  sender=UserRef(id=peer, username=f"u{peer}"), text="not stored yet",
                                  sent_at=wire_time(datetime.now(UTC)))
                await redis.call("ZADD", keys.dialog_pending(partitions.dialog_tag(key), key.id), 4, _encode(pending))
                await redis.call("SET", keys.dialog_seq(partitions.dialog_tag(key), key.id), 4)
            else:
                await redis.call("SET", keys.dialog_seq(partitions.dialog_tag(key), key.id), 3)
        progress(f"  {min(n, first - 2 + BATCH):,} / {n:,} dialogs made")


async def one_size(n: int, root: Path, args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    valkey = start_valkey(root / "valkey", log_file=root / "valkey.log")
    postgres = await asyncio.to_thread(start_postgres, root / "pg", log_file=root / "pg.log")
    try:
        admin = await asyncpg.connect(postgres.url)
        pool = await db.create_pool(postgres.url)
        redis = RedisClient.from_url(valkey.url)
        try:
            await db.apply_schema(pool)
            progress(f"== user 1 with {n:,} dialogs: making them")
            await populate(admin, redis, n, progress)
            await admin.execute("VACUUM ANALYZE dialogs")
            page, _ = await dialog_page(pool, redis, partitions, 1, limit=50, cursor=None)
            assert len(page) == min(50, n) and page[0].unread >= 1, page[:1]
            result: dict[str, Any] = {"dialogs": n}
            result["first_page_50"] = await timed(
                args.calls, lambda: dialog_page(pool, redis, partitions, 1, limit=50, cursor=None))
            progress(f"  first page of 50: {result['first_page_50']}")
            # A page deep in the list: the cursor of the page before it, walked to once.
            depth = min(10, max(1, n // 50))
            cursor = None
            for _ in range(depth - 1):
                _, cursor = await dialog_page(pool, redis, partitions, 1, limit=50, cursor=cursor)
            result["page_depth"] = depth
            result["deep_page_50"] = await timed(
                args.calls, lambda: dialog_page(pool, redis, partitions, 1, limit=50, cursor=cursor))
            progress(f"  page {depth} of 50: {result['deep_page_50']}")
            result["default_page_100"] = await timed(
                args.calls, lambda: dialog_page(pool, redis, partitions, 1, limit=None, cursor=None))
            progress(f"  first page, no limit given (100): {result['default_page_100']}")
            return result
        finally:
            await redis.close()
            await pool.close()
            await admin.close()
    finally:
        postgres.stop()
        valkey.stop()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dialog_list", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,1000,10000", help="comma-separated dialog counts")
    parser.add_argument("--calls", type=int, default=200, help="timed calls of the first page per size")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path("bench-results") / f"dialog-list-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        print(line, flush=True)

    report: dict[str, Any] = {"sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-dialog-list-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            (Path(tmp) / str(n)).mkdir()
            report["sizes"].append(await one_size(n, Path(tmp) / str(n), args, progress))
            out.write_text(json.dumps(report, indent=1))
    progress(f"results in {out}")


if __name__ == "__main__":
    asyncio.run(main())
