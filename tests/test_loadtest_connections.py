"""``--connections-only`` with both handshakes measures each on a fresh gateway process, a copy
of the running one, stopped after its measurement."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from chatkit.settings import Settings, env_name
from devstack.embedded import free_port
from devstack.launcher import healthz_ok, stop_process_groups
from loadtest import cli
from tests.support.stack import Stack


@pytest.fixture
def gateway_process(stack: Stack, settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real ``python -m gateway`` beside the in-process services (the ``stack`` fixture)."""
    port = free_port()
    env = {**os.environ, **settings.to_env(), env_name("port"): str(port), env_name("instance"): f"template-{port}",
           env_name("log_level"): "warning"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not healthz_ok(f"http://127.0.0.1:{port}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.1)
        yield process, f"ws://127.0.0.1:{port}/ws"
    finally:
        stop_process_groups([process], 15)


def read(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "connections.json").read_text())
    return data


@pytest.mark.timeout(240)
async def test_each_handshake_is_measured_on_a_fresh_gateway(
    gateway_process: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    template, url = gateway_process
    args = ["--url", url, "--connections-only", "30", "--hold", "0.2", "--run", "fresh", "--out", str(tmp_path)]
    code = await asyncio.to_thread(cli.run, args)
    assert code == 0
    data = read(tmp_path)
    assert data["gateway_pids"] == [template.pid] and data["fresh_gateway_per_handshake"] is True
    measured = data["measurements"]
    assert [m["mode"] for m in measured] == ["bare", "deflate"]
    pids = [m["gateway_pids"][0] for m in measured]
    assert len(set(pids)) == 2 and template.pid not in pids
    for m in measured:
        assert (m["opened"], m["failed"]) == (30, 0) and m["rss_after_bytes"] > 0
    # The copies are gone; the original still runs.
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert template.poll() is None


@pytest.mark.timeout(240)
async def test_a_gateway_that_cannot_be_copied_is_measured_in_place(stack: Stack, tmp_path: Path) -> None:
    # The in-process gateways live in the test process, which is no `python -m gateway`.
    args = ["--url", stack.gateway_urls[0], "--gateway-pid", str(os.getpid()), "--connections-only", "20",
            "--hold", "0.1", "--run", "inplace", "--out", str(tmp_path)]  # fmt: skip
    code = await asyncio.to_thread(cli.run, args)
    assert code == 0
    data = read(tmp_path)
    assert data["fresh_gateway_per_handshake"] is False
    assert [m["gateway_pids"] for m in data["measurements"]] == [[os.getpid()], [os.getpid()]]
