"""``python -m bench.run`` (``make bench``): the same load on every system, one table.

Systems (``--systems``, comma-separated; default all):

- ``chat``         this backend: ``python -m devstack`` with two gateways
- ``socketio``     python-socketio + AsyncRedisManager, two uvicorn servers
- ``soketi``       soketi 1.6.1 + Redis adapter, two servers (end-to-end only: no acks)
- ``relay``        ceiling: a bare single-process websockets relay
- ``relay-redis``  ceiling: a bare two-process relay over Redis pub/sub, a channel per user
- ``storage``      storage_worker rows/s against a raw COPY into the same PostgreSQL
- ``memory``       gateway memory per idle connection
- ``crowd``        many connected, few talking: 10,000 users (``--crowd``), 2 % talking at a human
                   rate, ramped in 4 stages; latency, ramp time, server RSS and CPU per user
- ``dialogs``      the table-per-dialog layout at 1,000 dialogs (``python -m bench.dialogs`` for more;
                   not run unless named)

Every server is started and stopped here, in its own process group; results go to
``bench-results/bench-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.load import Shape
from bench.procs import raise_nofile_limit
from bench.systems import bench_chat, bench_relay, bench_relay_redis, bench_socketio, bench_soketi

LOAD_SYSTEMS: dict[str, Callable[[Path, Shape, Callable[[str], None]], Awaitable[dict[str, Any]]]] = {
    "chat": bench_chat,
    "socketio": bench_socketio,
    "soketi": bench_soketi,
    "relay": bench_relay,
    "relay-redis": bench_relay_redis,
}
LABELS = {
    "chat": "chat backend (2 gateways)",
    "socketio": "python-socketio + Redis",
    "soketi": "soketi + Redis (e2e only)",
    "relay": "raw relay, 1 process",
    "relay-redis": "raw relay, 2 procs + Redis",
}
EXTRA = ("storage", "memory", "crowd")
ALL = (*LOAD_SYSTEMS, *EXTRA)
# Run only when named in --systems.
OPTIONAL = ("dialogs",)
RESULTS_DIR = Path("bench-results")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default=",".join(ALL), help=f"comma-separated, from: {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: 10 clients x 10 messages, 2,000 rows, 500 connections")
    parser.add_argument("--users", type=int, default=None, help="clients (even; default 200)")
    parser.add_argument("--messages", type=int, default=None, help="messages per client (default 200)")
    parser.add_argument("--window", type=int, default=None, help="un-acked messages per client (default 5)")
    parser.add_argument("--storage-messages", type=int, default=None, help="stream entries to store (100,000)")
    parser.add_argument("--connections", type=int, default=None, help="idle connections for memory (10,000)")
    parser.add_argument("--crowd", type=int, default=None, help="connected users for crowd (10,000)")
    parser.add_argument("--crowd-hold", type=float, default=None, help="seconds held at each crowd stage (20)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench-results/bench-<time>.json)")
    args = parser.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(ALL) - set(OPTIONAL)
    if unknown:
        parser.error(f"unknown systems {', '.join(sorted(unknown))}; choose from {', '.join((*ALL, *OPTIONAL))}")
    quick = args.quick
    args.shape = Shape(
        users=args.users or (10 if quick else 200),
        messages=args.messages or (10 if quick else 200),
        window=args.window or 5,
    )
    if args.shape.users < 2 or args.shape.users % 2:
        parser.error("--users must be even and at least 2")
    args.storage_messages = args.storage_messages or (2_000 if quick else 100_000)
    args.connections = args.connections or (500 if quick else 10_000)
    from bench.crowd import CrowdShape

    args.crowd_shape = CrowdShape(
        connected=args.crowd or (200 if quick else 10_000),
        stages=2 if quick else 4,
        stage_hold=args.crowd_hold or (3.0 if quick else 20.0),
    )
    return args


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --- the table --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    if not value or not base:
        return "-"
    return f"{value / base:.2f}x"


def table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the load systems, with throughput ratios."""
    rate = {name: r.get("delivered_per_s") for name, r in results.items() if "error" not in r}
    header = ("| system | delivered msgs/s | e2e p50 | e2e p99 | e2e max | ack p99 | lost | dup "
              "| vs python-socketio | vs soketi |")
    lines = [header, "|" + "---|" * 10]
    for name, result in results.items():
        if name not in LOAD_SYSTEMS:
            continue
        label = LABELS[name]
        if "error" in result:
            lines.append(f"| {label} | failed: {result['error']} |" + " |" * 8)
            continue
        e2e = result["latency_ms"]["end_to_end"]
        ack = "n/a" if result.get("no_ack") else _ms(result["latency_ms"]["ack"]["p99"])
        errors = sum(result["errors"].values())
        lost = f"{result['lost']}" + (f" (+{errors} errors)" if errors else "")
        lines.append(
            f"| {label} | {_rate(result['delivered_per_s'])} | {_ms(e2e['p50'])} | {_ms(e2e['p99'])} "
            f"| {_ms(e2e['max'])} | {ack} | {lost} | {result['duplicated']} "
            f"| {_ratio(rate.get(name), rate.get('socketio'))} | {_ratio(rate.get(name), rate.get('soketi'))} |"
        )
    return "\n".join(lines)


def _storage_line(storage: dict[str, Any]) -> str:
    return (
        f"storage: storage_worker {storage['worker_rows_per_s']:,.0f} rows/s "
        f"({storage['rows']:,} rows, {storage['dialogs']} dialogs, {storage['worker_s']:.2f} s) vs raw COPY "
        f"{storage['copy_rows_per_s']:,.0f} rows/s ({storage['copy_s']:.2f} s): "
        f"{storage['worker_rows_per_s'] / storage['copy_rows_per_s']:.2f}x of the ceiling"
        f" (median of {len(storage['ratios'])} rounds: {', '.join(f'{r:.2f}x' for r in storage['ratios'])})"
    )


def _memory_line(memory: dict[str, Any]) -> str:
    return (
        f"memory: gateway RSS {memory['rss_before_mb']:.1f} MB idle -> {memory['rss_after_mb']:.1f} MB with "
        f"{memory['opened']:,} idle logged-in connections ({memory['failed']} failed): "
        f"{memory['kb_per_connection']:.1f} KB per connection"
    )


def extra_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line for each of the non-load systems that ran: its figures, or how it failed."""
    lines: list[str] = []
    from bench.crowd import crowd_line

    for name, describe in (("storage", _storage_line), ("memory", _memory_line), ("crowd", crowd_line)):
        result = results.get(name)
        if result is not None:
            lines.append(f"{name}: failed: {result['error']}" if "error" in result else describe(result))
    return lines


# --- running ----------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, root: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    systems = [name for name in (*ALL, *OPTIONAL) if name in args.systems.split(",")]
    for name in systems:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        workdir = root / name
        workdir.mkdir(parents=True)
        try:
            if name in LOAD_SYSTEMS:
                results[name] = await LOAD_SYSTEMS[name](workdir, args.shape, _progress)
            elif name == "crowd":
                from bench.crowd import bench_crowd

                results[name] = await bench_crowd(workdir, args.crowd_shape, _progress)
            elif name == "dialogs":
                from bench.dialogs import main as bench_dialogs

                await bench_dialogs(["--sizes", "1000", "--out", str(workdir / "dialogs.json"), "--root", str(workdir)])
                results[name] = json.loads((workdir / "dialogs.json").read_text())
            elif name == "storage":
                from bench.storage import bench_storage

                results[name] = await bench_storage(workdir, args.storage_messages, _progress)
            else:
                from bench.memory import bench_memory

                results[name] = await bench_memory(workdir, args.connections, _progress)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "workdir": str(workdir)}
        print(f"== {name}: {time.monotonic() - started:.1f} s", flush=True)
    return results


def _progress(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile_limit(max(65536, args.connections * 3, args.crowd_shape.connected * 3))
    root = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    command = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.time()
    results = _run_loop(run_all(args, root))
    failed = any("error" in result or result.get("ok") is False for result in results.values())
    report: dict[str, Any] = {
        "command": command.strip(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "shape": {"users": args.shape.users, "messages": args.shape.messages, "window": args.shape.window},
        "machine": {**machine(), "rlimit_nofile": nofile},
        "results": results,
    }
    out = args.out or RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print()
    print(f"load: {args.shape.describe()}; {report['machine']['nproc']} CPUs, {report['machine']['cpu']}")
    print(table(results))
    for line in extra_lines(results):
        print(line)
    print(f"results: {out}")
    if failed:
        print(f"some systems failed; their logs are under {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _run_loop(main: Coroutine[Any, Any, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    # The load generator runs on uvloop, like every server measured.
    import uvloop

    return uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
