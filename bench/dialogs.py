"""``python -m bench.dialogs``: the table-per-dialog layout at 1,000 / 10,000 / 100,000 dialogs.

For each size, on a fresh embedded PostgreSQL and Valkey (loopback only), it measures:

- **open**: N dialogs opened through chat_service's real ``store.open_dialog`` by
  ``--concurrency`` openers sharing one pool sized like chat_service's (opens/s by tenth, and
  latency percentiles). ``--layout pairs`` opens dialogs of distinct users (2k+1, 2k+2);
  ``--layout hub`` opens every dialog with user 1 (one user with N dialogs, the case of the
  ``dialogs`` query). ``--ddl legacy`` opens them with the older table shape (unique id index,
  foreign key to users) for comparison;
- **disk and catalogue**: database size and the system catalogues' size, per dialog;
- **storage**: ``--messages`` messages spread round-robin over all N dialogs, put on the stream
  as chat_service does, stored by a real ``python -m storage_worker`` (rows/s), while every
  PostgreSQL backend of the worker and of the pool is sampled for USS/PSS once a second; run
  once with the default connection bound and once with ``--unbounded-tables`` if asked;
- **history**: a history page (HistoryReader, 50 messages) of random dialogs, percentiles;
- **dialogs**: the busiest user's dialog list (``store.list_dialogs``, the wire reply) and
  ``dialog_list.dialogs_by_activity`` (50 newest), percentiles.

Results go to ``bench-results/dialogs-<time>.json``; progress lines go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psutil
import redis.asyncio as aioredis

from bench.procs import Group
from bench.run import machine
from bench.storage import PARTITIONS, drained, fill_stream
from chat_service import dialog_list, store
from chat_service.history import HistoryReader
from chatkit import db, keys
from chatkit.dialogs import DialogKey
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from chatkit.wire import Message, UserRef
from devstack.embedded import start_postgres, start_valkey

_encode = msgspec.json.Encoder().encode
POOL_SIZE = 10  # chatkit.db.create_pool's default, which chat_service uses
DRAIN_TIMEOUT = 1800.0


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 3)}


def backend_memory(pids: list[int]) -> dict[int, tuple[float, float]]:
    """pid -> (USS, PSS) in MiB."""
    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        out[pid] = (info.uss / 2**20, info.pss / 2**20)
    return out


async def backends_of(conn: asyncpg.Connection, process: psutil.Process | None) -> list[int]:
    """The backends serving `process`'s connections (by client port), or every client backend
    except `conn`'s own when `process` is None."""
    rows = await conn.fetch(
        "SELECT pid, client_port FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    if process is None:
        return [r["pid"] for r in rows]
    try:
        ports = {c.laddr.port for c in process.net_connections(kind="tcp") if c.raddr}
        for child in process.children(recursive=True):
            ports |= {c.laddr.port for c in child.net_connections(kind="tcp") if c.raddr}
    except psutil.Error:
        return []
    return [r["pid"] for r in rows if r["client_port"] in ports]


async def database_and_catalogue_bytes(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT pg_database_size(current_database()) AS db, (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
        " WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r') AS cat"
    )
    assert row is not None
    return int(row["db"]), int(row["cat"])


def dialog_keys(n: int, layout: str) -> list[DialogKey]:
    if layout == "hub":
        return [DialogKey(1, k) for k in range(2, n + 2)]
    return [DialogKey(2 * k + 1, 2 * k + 2) for k in range(n)]


async def open_all(
    pool: asyncpg.Pool, keys_: list[DialogKey], concurrency: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    queue = list(reversed(keys_))
    latencies: list[float] = []
    tenths: list[float] = []
    started = time.monotonic()
    mark = started
    step = max(1, len(keys_) // 10)

    async def opener() -> None:
        nonlocal mark
        while queue:
            key = queue.pop()
            t0 = time.monotonic()
            opened = await store.open_dialog(pool, key.lo, UserRef(id=key.hi, username=f"u{key.hi}"))
            latencies.append(time.monotonic() - t0)
            assert opened.created, f"expected dialog {key.id} to be new"
            if len(latencies) % step == 0:
                now = time.monotonic()
                tenths.append(round(step / (now - mark), 1))
                mark = now
                progress(f"  opened {len(latencies):,}/{len(keys_):,}: {tenths[-1]:,.0f}/s in the last {step:,}")

    await asyncio.gather(*(opener() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"opens_per_s": round(len(keys_) / elapsed, 1), "seconds": round(elapsed, 1),
            "opens_per_s_by_tenth": tenths, "latency": percentiles(latencies)}


def messages_for(keys_: list[DialogKey], total: int, first_seq: int) -> list[Message]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for n in range(total):
        key = keys_[n % len(keys_)]
        seq = first_seq + n // len(keys_)
        sender = key.lo if n % 2 else key.hi
        sent_at = (base + timedelta(milliseconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out.append(Message(id=str(uuid.uuid4()), dialog_id=key.id, seq=seq,
                           sender=UserRef(id=sender, username=f"u{sender}"),
                           text=f"dialogs bench {n} " + "x" * 40, sent_at=sent_at))
    return out


async def store_all(
    root: Path, redis_url: str, database_url: str, admin: asyncpg.Connection, pool_pids: list[int],
    messages: list[Message], max_tables: int, progress: Callable[[str], None],
) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.delete(*(keys.messages(tag) for tag in PARTITIONS.tags()))
        await fill_stream(redis, messages, progress)
        samples: list[dict[str, Any]] = []
        with Group(root / "logs") as group:
            group.spawn_python("storage_worker", "storage_worker", env={
                "CHAT_REDIS_URL": redis_url, "CHAT_DATABASE_URL": database_url, "CHAT_LOG_LEVEL": "WARNING",
                "CHAT_INSTANCE": f"bench-dialogs-{max_tables}",
                "CHAT_DATABASE_MAX_TABLES_PER_CONNECTION": str(max_tables),
            })
            worker = psutil.Process(group.processes[0][1].pid)
            started: float | None = None
            deadline = time.monotonic() + DRAIN_TIMEOUT
            next_sample = 0.0
            while True:
                group.check()
                done, left = await drained(redis)
                now = time.monotonic()
                if started is None and left >= 0:
                    started = now
                if now >= next_sample:
                    worker_pids = await backends_of(admin, worker)
                    memory = backend_memory(worker_pids + pool_pids)
                    samples.append({
                        "t": round(now - (started or now), 1), "left": left,
                        "worker": [memory[p] for p in worker_pids if p in memory],
                        "pool": [memory[p] for p in pool_pids if p in memory],
                    })
                    if left >= 0:
                        lanes = ", ".join(f"{uss:.0f}/{pss:.0f}" for uss, pss in samples[-1]["worker"])
                        progress(f"  storage: {len(messages) - left:,}/{len(messages):,} stored; "
                                 f"worker backends USS/PSS MiB: {lanes}")
                    next_sample = now + 1.0
                if done and started is not None:
                    elapsed = now - started
                    break
                if now > deadline:
                    raise TimeoutError(f"storage_worker did not drain {len(messages):,} entries")
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    peak = max((uss for s in samples for uss, _ in s["worker"]), default=0.0)
    return {"rows": len(messages), "seconds": round(elapsed, 2), "rows_per_s": round(len(messages) / elapsed),
            "max_tables_per_connection": max_tables, "worker_backend_peak_uss_mib": round(peak, 1),
            "memory_samples": samples}


async def timed(calls: int, call: Callable[[], Any]) -> dict[str, float]:
    latencies = []
    for _ in range(calls):
        t0 = time.monotonic()
        await call()
        latencies.append(time.monotonic() - t0)
    return percentiles(latencies)


async def one_size(args: argparse.Namespace, n: int, root: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"dialogs": n, "layout": args.layout, "ddl": args.ddl}
    valkey = start_valkey(root / "valkey", log_file=root / "valkey.log")
    postgres = await asyncio.to_thread(start_postgres, root / "pg", log_file=root / "pg.log")
    settings = Settings()
    try:
        admin = await asyncpg.connect(postgres.url)
        pool = await db.create_pool(postgres.url, max_size=POOL_SIZE, min_size=POOL_SIZE,
                                    max_queries=settings.database_max_tables_per_connection)
        redis = RedisClient.from_url(valkey.url)
        try:
            await db.apply_schema(pool)
            keys_ = dialog_keys(n, args.layout)
            users = max(k.hi for k in keys_)
            await admin.copy_records_to_table(
                "users", columns=["id", "username", "email", "password_hash"],
                records=[(u, f"u{u}", f"u{u}@bench.example.org", "x") for u in range(1, users + 1)])
            await admin.execute("SELECT setval('users_id_seq', $1)", users)
            size0, cat0 = await database_and_catalogue_bytes(admin)
            progress(f"== {n:,} dialogs ({args.layout}, {args.ddl} tables): opening")
            if args.ddl == "legacy":
                setattr(store, "dialog_table_ddl", db.legacy_dialog_table_ddl)  # noqa: B010
            result["open"] = await open_all(pool, keys_, args.concurrency, progress)
            await admin.execute("CHECKPOINT")
            size1, cat1 = await database_and_catalogue_bytes(admin)
            result["empty_tables"] = {
                "database_bytes_per_dialog": round((size1 - size0) / n),
                "catalogue_bytes_per_dialog": round((cat1 - cat0) / n),
            }
            progress(f"  disk per empty dialog {(size1 - size0) / n / 1024:.1f} KiB "
                     f"(catalogue {(cat1 - cat0) / n / 1024:.1f} KiB)")
            pool_pids = await backends_of(admin, None)
            messages = messages_for(keys_, args.messages, 1)
            runs = [settings.database_max_tables_per_connection]
            if args.unbounded_tables:
                runs.append(10**9)
            result["storage"] = []
            first_seq = 1
            for number, max_tables in enumerate(runs):
                if number:
                    first_seq += -(-args.messages // n)
                    messages = messages_for(keys_, args.messages, first_seq)
                progress(f"  storing {len(messages):,} messages over {n:,} dialogs "
                         f"(connections replaced after {max_tables:,} tables)")
                stored = await store_all(root / f"storage-{number}", valkey.url, postgres.url, admin, pool_pids,
                                         messages, max_tables, progress)
                progress(f"  storage: {stored['rows_per_s']:,} rows/s, worker backend peak USS "
                         f"{stored['worker_backend_peak_uss_mib']} MiB")
                result["storage"].append(stored)
            await admin.execute("CHECKPOINT")
            size2, _ = await database_and_catalogue_bytes(admin)
            result["stored_tables"] = {"database_bytes_per_dialog": round((size2 - size0) / n)}
            reader = HistoryReader(redis, PARTITIONS, pool)
            sample = random.Random(1).sample(keys_, min(len(keys_), 1000))
            it = iter(sample * 2)
            result["history"] = await timed(len(sample), lambda: reader.page(next(it), before=None, limit=50))
            busiest = 1
            if args.hub_rows:
                # User 1's dialogs raised to --hub-rows as rows of `dialogs` alone (no tables, no
                # users.chats): what the list queries read. Opening them through open_dialog
                # would also grow user 1's users.chats array to that size (see --layout hub).
                have = int(await admin.fetchval("SELECT max(id) FROM users"))
                if have < args.hub_rows + 2:
                    await admin.copy_records_to_table(
                        "users", columns=["id", "username", "email", "password_hash"],
                        records=[(u, f"u{u}", f"u{u}@bench.example.org", "x")
                                 for u in range(have + 1, args.hub_rows + 3)])
                await admin.execute(
                    "INSERT INTO dialogs (lo, hi, last_seq, last_at) SELECT 1, k, k, now() - k * interval '1 s'"
                    " FROM generate_series(2, $1 + 1) k ON CONFLICT DO NOTHING", args.hub_rows)
                await admin.execute("ANALYZE dialogs")
            result["dialogs_list"] = {
                "user_dialogs": len(await store.list_dialogs(pool, busiest)),
                "list_dialogs": await timed(args.queries, lambda: store.list_dialogs(pool, busiest)),
                "by_activity_50": await timed(
                    args.queries, lambda: dialog_list.dialogs_by_activity(pool, busiest, limit=50)),
            }
            result["pool_backends_uss_pss_mib"] = list(backend_memory(pool_pids).values())
            listed = result["dialogs_list"]
            progress(f"  history {result['history']}; dialogs of user 1 ({listed['user_dialogs']:,}): "
                     f"list {listed['list_dialogs']}, by activity {listed['by_activity_50']}")
        finally:
            await redis.close()
            await pool.close()
            await admin.close()
    finally:
        postgres.stop()
        valkey.stop()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dialogs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated dialog counts (e.g. 1000,10000,100000)")
    parser.add_argument("--layout", choices=("pairs", "hub"), default="pairs")
    parser.add_argument("--ddl", choices=("current", "legacy"), default="current")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--messages", type=int, default=100_000, help="messages spread over all dialogs")
    parser.add_argument("--queries", type=int, default=200, help="timed calls per dialog-list query")
    parser.add_argument("--hub-rows", type=int, default=0,
                        help="before the dialog-list queries, give user 1 this many dialogs as `dialogs` rows")
    parser.add_argument("--unbounded-tables", action="store_true",
                        help="store a second time with connections never replaced for their tables")
    parser.add_argument("--root", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> None:
    import tempfile

    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("bench-results") / f"dialogs-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        print(line, flush=True)

    report: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                              "load_before": list(psutil.getloadavg()), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-dialogs-", dir=args.root) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            (Path(tmp) / str(n)).mkdir(parents=True)
            report["sizes"].append(await one_size(args, n, Path(tmp) / str(n), progress))
            out.write_text(json.dumps(report, indent=1))
    report["load_after"] = list(psutil.getloadavg())
    out.write_text(json.dumps(report, indent=1))
    progress(f"results in {out}")


if __name__ == "__main__":
    asyncio.run(main())
