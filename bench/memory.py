"""Gateway memory per idle connection: one gateway under ``python -m devstack``, its RSS before
and after ``connections`` idle WebSocket connections (then again once they are all logged in,
with one user's token, through ``auth``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import websockets
from websockets.asyncio.client import ClientConnection

from bench.procs import Group
from bench.systems import DEVSTACK_STOP_TIMEOUT, start_devstack
from chat_client import ChatClient, ServerError

CONNECT_CONCURRENCY = 200
AUTH_CONCURRENCY = 32
SETTLE_SECONDS = 2.0
PASSWORD = "bench-password-not-secret"


def gateway_process(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "gateway" in child.cmdline():
                return child
    raise RuntimeError("found no gateway process under the devstack launcher")


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


async def settled_rss(process: psutil.Process) -> float:
    await asyncio.sleep(SETTLE_SECONDS)
    return rss_mb(process)


async def open_connections(url: str, count: int, progress: Callable[[str], None]) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns: list[ClientConnection] = []

    async def connect() -> None:
        async with gate:
            conns.append(await websockets.connect(url, compression=None, open_timeout=30))
            if len(conns) % 2000 == 0:
                progress(f"  {len(conns):,}/{count:,} connected")

    results = await asyncio.gather(*(connect() for _ in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_all(conns)
        raise RuntimeError(f"{len(failures)} of {count} connections failed, e.g. {failures[0]!r}")
    return conns


async def log_in_all(url: str, conns: list[ClientConnection]) -> None:
    async with await ChatClient.connect(url) as client:
        name = "bench-memory"
        with contextlib.suppress(ServerError):
            await client.register(name, f"{name}@bench.example.org", PASSWORD)
        await client.login(name, PASSWORD)
        token = client.token
    # Below the gateway's Redis pool (64 connections, non-blocking): more XADDs at once than
    # that fail with "unavailable".
    gate = asyncio.Semaphore(AUTH_CONCURRENCY)

    async def auth(ws: ClientConnection) -> None:
        async with gate:
            await ws.send(f'{{"type":"auth","token":"{token}"}}')
            reply = await asyncio.wait_for(ws.recv(), 30)
            if '"logged_in"' not in str(reply):
                raise RuntimeError(f"auth answered {reply!r}")

    await asyncio.gather(*(auth(ws) for ws in conns))


async def close_all(conns: list[ClientConnection]) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def close(ws: ClientConnection) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(close(ws) for ws in conns))


async def bench_memory(root: Path, connections: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with Group(root / "logs", stop_timeout=DEVSTACK_STOP_TIMEOUT) as group:
        progress("  starting python -m devstack (CHAT_GATEWAYS=1)")
        ports = await asyncio.to_thread(start_devstack, group, root, 1)
        url = f"ws://127.0.0.1:{ports[0]}/ws"
        launcher_pid = next(iter(group.pids()))
        gateway = gateway_process(launcher_pid)
        before = await settled_rss(gateway)
        started = time.monotonic()
        conns = await open_connections(url, connections, progress)
        try:
            connect_s = time.monotonic() - started
            after = await settled_rss(gateway)
            progress(f"  {connections:,} idle connections in {connect_s:.1f} s: "
                     f"gateway RSS {before:.1f} -> {after:.1f} MB")
            await log_in_all(url, conns)
            logged_in = await settled_rss(gateway)
            progress(f"  all logged in: gateway RSS {logged_in:.1f} MB")
        finally:
            await close_all(conns)
        group.check()
    return {
        "connections": connections,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_logged_in_mb": round(logged_in, 1),
        "kb_per_connection": round((after - before) * 1024 / connections, 2),
        "kb_per_logged_in_connection": round((logged_in - before) * 1024 / connections, 2),
        "connect_s": round(connect_s, 2),
    }
