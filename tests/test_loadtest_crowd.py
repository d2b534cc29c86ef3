"""``--crowd``: many users connected, a few talking, ramped in stages, against the in-process
two-gateway stack."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from devstack.embedded import free_port
from loadtest import cli
from loadtest.crowd import CrowdConfig
from tests.support.stack import Stack


def read_result(out: Path) -> tuple[dict[str, Any], str]:
    [path] = out.glob("*.json")
    return json.loads(path.read_text()), path.with_suffix(".html").read_text()


def test_talkers_are_an_even_share_of_the_crowd() -> None:
    urls = ("ws://127.0.0.1:1/ws",)
    assert CrowdConfig(urls, connected=5000, active=0.02).talkers == 100
    assert CrowdConfig(urls, connected=100, active=0.05).talkers == 4  # 5 rounded down to pairs
    assert CrowdConfig(urls, connected=10, active=0.01).talkers == 2  # at least one pair
    with pytest.raises(ValueError):
        CrowdConfig(urls, connected=10, active=1.5).validate()
    with pytest.raises(ValueError):
        CrowdConfig(urls, connected=1).validate()


@pytest.mark.timeout(240)
async def test_crowd_ramps_in_stages_and_delivers_every_message(stack: Stack, tmp_path: Path) -> None:
    args = [arg for url in stack.gateway_urls for arg in ("--url", url)]
    args += ["--crowd", "60", "--active", "0.1", "--talk-every", "0.1", "--stages", "3", "--stage-hold", "1",
             "--drain", "5", "--run", "crowd", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    code = await asyncio.to_thread(cli.run, args)
    assert code == 0
    data, page = read_result(tmp_path)
    crowd = data["crowd"]
    stages = crowd["stages"]
    assert [stage["stage"] for stage in stages] == [1, 2, 3]
    # 6 talkers, then 54 idle users in thirds.
    assert [stage["connected"] for stage in stages] == [6 + 18, 6 + 36, 6 + 54]
    assert all(stage["talking"] == 6 for stage in stages)
    assert crowd["connect_failures"] == {}
    summary = data["summary"]
    assert summary["sent"] > 0 and summary["delivered"] == summary["acked"] == summary["sent"]
    assert (summary["lost"], summary["duplicated"], summary["errors"]) == (0, 0, {})
    assert sum(stage["delivered"] for stage in stages) <= summary["delivered"]
    for stage in stages:
        assert stage["servers_rss_bytes"] > 0 and stage["ramp_s"] >= 0
    assert max(row["connections"] or 0 for row in data["series"]) == 60
    assert data["servers"]["processes"] and data["servers"]["leaks"] == []
    assert "Crowd stages" in page and "Passed" in page


def test_crowd_against_no_server_fails_with_a_message(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    console = Console(record=True, width=140)
    code = cli.run(["--url", f"ws://127.0.0.1:{port}/ws", "--crowd", "10", "--no-progress", "--out", str(tmp_path)],
                   console=console)  # fmt: skip
    assert code == 1
    assert "logging in 2 talkers and the idle accounts failed" in console.export_text()
    assert list(tmp_path.iterdir()) == []
