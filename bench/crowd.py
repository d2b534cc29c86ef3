"""The crowd shape for ``make bench``: ``python -m devstack`` with two gateways, ``connected``
users of whom 2 % talk in pairs at a human rate (one message every 10 s each on average), the
idle ones ramped in stages (:mod:`loadtest.crowd`); every server process of the stack sampled
for RSS and CPU per connected user."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Group
from bench.systems import DEVSTACK_STOP_TIMEOUT, start_devstack
from loadtest.connections import raise_fd_limit
from loadtest.crowd import CrowdConfig, run_crowd
from loadtest.servers import Sampler, stack_processes

SAMPLE_EVERY_S = 1.0


@dataclass(frozen=True)
class CrowdShape:
    connected: int = 10_000
    active: float = 0.02
    talk_every: float = 10.0
    stages: int = 4
    stage_hold: float = 20.0

    def describe(self) -> str:
        return (f"{self.connected:,} connected, {self.active:.0%} talking (a message every {self.talk_every:g} s "
                f"each), {self.stages} stages held {self.stage_hold:g} s")  # fmt: skip


async def bench_crowd(root: Path, shape: CrowdShape, progress: Callable[[str], None]) -> dict[str, Any]:
    raise_fd_limit()
    with Group(root / "logs", stop_timeout=DEVSTACK_STOP_TIMEOUT) as group:
        progress("  starting python -m devstack (CHAT_GATEWAYS=2, embedded Valkey and PostgreSQL)")
        ports = await asyncio.to_thread(start_devstack, group, root, 2)
        urls = tuple(f"ws://127.0.0.1:{port}/ws" for port in ports)
        sampler = Sampler(stack_processes(next(iter(group.pids()))), SAMPLE_EVERY_S)
        config = CrowdConfig(
            urls, connected=shape.connected, active=shape.active, talk_every=shape.talk_every, stages=shape.stages,
            stage_hold=shape.stage_hold, run=uuid.uuid4().hex[:8],
        )  # fmt: skip
        progress(f"  crowd: {shape.describe()}")
        data = await run_crowd(config, sampler, None)
        group.check()
    crowd, summary = data["crowd"], data["summary"]
    for stage in crowd["stages"]:
        progress(f"  stage {stage['stage']}: {stage['connected']:,} connected, ramp {stage['ramp_s']:.1f} s, "
                 f"e2e p99 {stage['latency_ms']['p99']} ms, {stage['rss_per_user_bytes'] / 1024:.1f} KiB and "
                 f"{stage['cpu_per_user_us_per_s']:.1f} µs CPU/s per user")  # fmt: skip
    return {
        "shape": shape.describe(),
        "stages": crowd["stages"],
        "ramp_s": crowd["ramp_s"],
        "connect_failures": crowd["connect_failures"],
        "sent": summary["sent"],
        "delivered": summary["delivered"],
        "lost": summary["lost"],
        "duplicated": summary["duplicated"],
        "errors": summary["errors"],
        "latency_ms": summary["latency_ms"],
        "ok": data["ok"],
    }


def crowd_line(result: dict[str, Any]) -> str:
    last = result["stages"][-1]
    latency = last["latency_ms"]
    return (
        f"crowd: {result['shape']}: ramp to {last['connected']:,} connected in {result['ramp_s']:.1f} s; at full size "
        f"e2e p50 {latency['p50']} ms, p99 {latency['p99']} ms; gateways and services "
        f"{last['servers_rss_bytes'] / 2**20:,.0f} MiB RSS ({last['rss_per_user_bytes'] / 1024:.1f} KiB per connected "
        f"user), CPU {last['servers_cpu_percent']:.0f} % ({last['cpu_per_user_us_per_s']:.1f} µs/s per user); "
        f"{result['delivered']:,} of {result['sent']:,} delivered, lost {result['lost']}, dup {result['duplicated']}"
    )
