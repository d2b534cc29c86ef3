"""Gateway memory per idle connection: one gateway under ``python -m devstack``, measured with
the load tester's connections-only probe (:mod:`loadtest.connections`): ``connections`` idle,
logged-in connections (``auth`` with a token), bare client handshake (no permessage-deflate
offered), the gateway's RSS before and after."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.procs import Group
from bench.systems import DEVSTACK_STOP_TIMEOUT, start_devstack
from loadtest.connections import fetch_tokens, measure

HOLD_SECONDS = 3.0


def gateway_process(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "gateway" in child.cmdline():
                return child
    raise RuntimeError("found no gateway process under the devstack launcher")


async def bench_memory(root: Path, connections: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with Group(root / "logs", stop_timeout=DEVSTACK_STOP_TIMEOUT) as group:
        progress("  starting python -m devstack (CHAT_GATEWAYS=1)")
        ports = await asyncio.to_thread(start_devstack, group, root, 1)
        urls = [f"ws://127.0.0.1:{ports[0]}/ws"]
        gateway = gateway_process(next(iter(group.pids())))
        tokens = await fetch_tokens(urls, uuid.uuid4().hex[:8])
        progress(f"  opening {connections:,} idle logged-in connections to one gateway (pid {gateway.pid})")
        result = await measure(urls, tokens, connections, "bare", [gateway.pid], hold=HOLD_SECONDS)
        group.check()
    if not result.opened:
        raise RuntimeError(f"none of {connections:,} connections opened")
    per = result.per_connection or 0.0
    progress(f"  {result.opened:,} connections ({result.failed} failed) in {result.setup_s:.1f} s: gateway RSS "
             f"{result.rss_before / 2**20:.1f} -> {result.rss_after / 2**20:.1f} MB, {per / 1024:.1f} KB each")
    return {
        "connections": connections,
        "opened": result.opened,
        "failed": result.failed,
        "rss_before_mb": round(result.rss_before / 2**20, 1),
        "rss_after_mb": round(result.rss_after / 2**20, 1),
        "kb_per_connection": round(per / 1024, 2),
        "negotiated_extensions": result.extensions,
        "connect_s": round(result.setup_s, 2),
    }
