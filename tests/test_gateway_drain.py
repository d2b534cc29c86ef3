"""SIGTERM to a gateway, as a real process under load (docs/PROTOCOL.md, "Close codes"): every
client is closed with 1001, one that stopped reading is dropped after a grace, the process exits
in bounded time without uvicorn having to cancel anything, and the clients that reconnect to the
other gateway lose nothing that was acknowledged (the chaos tests' checks, tests/chaos_traffic.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chat_client import ChatClient
from tests.support.chaos_traffic import Traffic, chaos_stack, gateway_log, run_with_fault, until
from tests.support.processes import ProcessStack
from tests.support.users import PASSWORD

pytestmark = pytest.mark.timeout(240)

# Generous: the drain's own bound is gateway/server.py's DRAIN_GRACE_SECONDS plus uvicorn's
# graceful shutdown; this only catches a gateway that hangs.
EXIT_BOUND_SECONDS = 30.0
CLOSE_GOING_AWAY = 1001
# A stalled client asks for this many history pages of this many long messages: megabytes more
# than the socket buffers hold, fewer frames than the chaos stack's send queue limit (64).
PAGES, PAGE, TEXT = 30, 50, "x" * 4000


def frames_sent(stack: ProcessStack, name: str, kind: str) -> float:
    url = f"http://127.0.0.1:{stack.gateway_ports[name]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chat_gateway_frames_out_total" and sample.labels.get("type") == kind:
                return sample.value
    return 0.0


async def stalled_client(stack: ProcessStack, name: str) -> ChatClient:
    """A client on gateway ``name`` that stopped reading with megabytes on their way to it."""
    url = stack.url(name)
    client = await ChatClient.connect(url)
    await client.register("stalled", "stalled@example.org", PASSWORD)
    await client.login("stalled", PASSWORD)
    await client.register("stalled_peer", "stalled_peer@example.org", PASSWORD)
    dialog = (await client.open_dialog("stalled_peer"))["id"]
    for n in range(PAGE):
        await client.send(dialog, f"{n} {TEXT}")
    before = await asyncio.to_thread(frames_sent, stack, name, "history")
    client.ws.transport.pause_reading()
    for _ in range(PAGES):
        await client.send_raw(f'{{"type": "history", "dialog_id": "{dialog}", "limit": {PAGE}}}')

    for _ in range(1200):
        if await asyncio.to_thread(frames_sent, stack, name, "history") >= before + PAGES:
            return client
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not push the {PAGES} history pages within a minute")


async def test_sigterm_drains_under_load(tmp_path: Path) -> None:
    with chaos_stack(tmp_path) as stack:
        observer = await ChatClient.connect(stack.url("gateway-1"))
        stalled = await stalled_client(stack, "gateway-1")
        exited_after: list[float] = []
        try:
            async def fault(traffic: Traffic) -> None:
                process = stack.processes.pop("gateway-1")
                started = time.monotonic()
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.to_thread(process.wait, EXIT_BOUND_SECONDS)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    raise AssertionError(f"gateway-1 still running {EXIT_BOUND_SECONDS:g} s after SIGTERM") from None
                exited_after.append(time.monotonic() - started)

            traffic = await run_with_fault(stack, fault)
            # The clients of gateway-1 were moved, by the close, to gateway-2.
            moved = [p.name for p in traffic.participants if p.connections > 1]
            assert moved, "no participant reconnected after gateway-1 stopped"
            await until(lambda: observer.closed, lambda: "the observer's connection to close")
            assert observer.ws.close_code == CLOSE_GOING_AWAY, observer.ws.close_code
        finally:
            await observer.close()
            await stalled.close()
        log = gateway_log(stack, "gateway-1")
        assert "gateway stopping" in log, log[-3000:]
        # Connections come and go at DEBUG only: none of the several above left an INFO line.
        assert "connection open" not in log and "[accepted]" not in log, log[-3000:]
        # Every connection went within the drain's grace: uvicorn cancelled nothing.
        assert "timeout graceful shutdown exceeded" not in log, log[-3000:]
        assert exited_after
