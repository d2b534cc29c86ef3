"""Soak runs: the leak detector on synthetic series (pure) and on real processes, one that leaks
on purpose and one that does not; a --duration run samples the servers and ends without a
deadline error when --timeout is left at its default."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from loadtest import cli
from loadtest.driver import OnMessage, partner_of
from loadtest.runner import LoadConfig, default_timeout, run_load
from loadtest.servers import Sampler, given_processes
from loadtest.trend import RSS_LIMIT_BYTES_PER_H, Limits, judge, theil_sen
from tests.support.stack import Stack

MIB = 2**20


def series(values: Callable[[float], float], *, seconds: float = 600, every: float = 5) -> list[dict[str, float]]:
    out = []
    for n in range(int(seconds / every) + 1):
        t = n * every
        out.append({"t": t, "rss_bytes": values(t), "fds": 40.0, "cpu_percent": 10.0})
    return out


# --- the robust slope ---------------------------------------------------------------------------


def test_theil_sen_recovers_a_slope_through_outliers() -> None:
    times = [float(t) for t in range(100)]
    values = [3.0 * t + 7.0 for t in times]
    for index in (5, 30, 31, 77):
        values[index] += 10_000.0  # spikes that would drag least squares
    assert theil_sen(times, values) == pytest.approx(3.0)
    assert theil_sen([1.0, 1.0], [0.0, 5.0]) == 0.0  # no two distinct times
    with pytest.raises(ValueError):
        theil_sen([1.0], [1.0, 2.0])


def test_theil_sen_thins_long_series() -> None:
    times = [float(t) for t in range(5000)]
    assert theil_sen(times, [2.0 * t for t in times]) == pytest.approx(2.0)


# --- verdicts on synthetic series ---------------------------------------------------------------


def test_steady_noisy_series_is_steady() -> None:
    rng = random.Random(7)
    trend = judge(series(lambda t: 100 * MIB + rng.uniform(-2, 2) * MIB), warmup_s=120)
    assert trend["verdict"] == "steady", trend
    assert abs(trend["rss_bytes_per_h"]) < RSS_LIMIT_BYTES_PER_H


def test_steady_leak_after_warmup_is_growing() -> None:
    # 100 MiB/h of growth after a warm-up that jumps around.
    def rss(t: float) -> float:
        return (300 * MIB if t < 120 else 100 * MIB) + t * 100 * MIB / 3600

    trend = judge(series(rss), warmup_s=120)
    assert trend["verdict"] == "growing", trend
    assert trend["rss_bytes_per_h"] == pytest.approx(100 * MIB, rel=0.01)
    assert "RSS grows" in trend["reason"]


def test_one_step_then_plateau_is_not_a_leak() -> None:
    # An arena grown once in the middle: the whole window's slope is high, the second half's flat.
    trend = judge(series(lambda t: 100 * MIB + (20 * MIB if t >= 360 else 0)), warmup_s=120)
    assert trend["verdict"] == "steady", trend


def test_slow_growth_below_the_limit_and_tiny_growth_pass() -> None:
    assert judge(series(lambda t: 100 * MIB + t * 10 * MIB / 3600), warmup_s=60)["verdict"] == "steady"
    # Fast in MiB/h but only 2 MiB in all over a short window: under the noise floor.
    short = series(lambda t: 100 * MIB + t * 2 * MIB / 20, seconds=20, every=1)
    assert judge(short, warmup_s=0)["verdict"] == "steady"


def test_file_descriptor_leak_is_growing() -> None:
    samples = series(lambda t: 100 * MIB)
    for sample in samples:
        sample["fds"] = 40 + sample["t"] / 10  # 360 per hour
    trend = judge(samples, warmup_s=60)
    assert trend["verdict"] == "growing" and "open files" in trend["reason"]


def test_too_few_samples_after_warmup_is_not_judged() -> None:
    trend = judge(series(lambda t: t * MIB, seconds=30), warmup_s=25)
    assert trend["verdict"] == "too short to judge" and trend["rss_bytes_per_h"] is None


# --- real processes -----------------------------------------------------------------------------

LEAKER = "import time\nkeep = []\nwhile True:\n    keep.append(bytearray(1 << 20)); time.sleep(0.02)\n"
STEADY = "import time\nwhile True:\n    time.sleep(0.05)\n"


@pytest.mark.timeout(60)
async def test_sampler_finds_the_process_that_leaks() -> None:
    leaker = await asyncio.create_subprocess_exec(sys.executable, "-c", LEAKER)
    steady = await asyncio.create_subprocess_exec(sys.executable, "-c", STEADY)
    try:
        sampler = Sampler(given_processes([leaker.pid, steady.pid]), interval=0.1)
        origin = time.monotonic()
        sampler.start()
        await asyncio.sleep(2.5)
        await sampler.stop()
    finally:
        for process in (leaker, steady):
            process.kill()
            await process.wait()
    result = sampler.to_json(origin, warmup_s=0.5, limits=Limits(min_samples=5))
    verdicts = {p["pid"]: p["trend"]["verdict"] for p in result["processes"]}
    assert verdicts == {leaker.pid: "growing", steady.pid: "steady"}, result["note"]
    assert result["leaks"] == [f"pid {leaker.pid}"]
    for process in result["processes"]:
        assert all(sample["fds"] > 0 and sample["rss_bytes"] > 0 for sample in process["samples"])


# --- a --duration run ---------------------------------------------------------------------------


class EchoDriver:
    """Delivers every message at once, in memory."""

    name = "echo"

    def __init__(self) -> None:
        self.on_message: OnMessage | None = None

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        return None

    async def start_receiving(self, on_message: OnMessage) -> None:
        self.on_message = on_message

    async def send(self, sender: int, key: str) -> None:
        assert self.on_message is not None
        self.on_message(partner_of(sender), key, time.monotonic())

    async def close(self) -> None:
        return None


def test_default_timeout_leaves_room_for_setup_and_drain() -> None:
    timeout = default_timeout(users=200, duration=600, drain=10, request_timeout=10)
    assert timeout > 600 + 10 + 10
    assert default_timeout(users=2, duration=None, drain=10, request_timeout=10) == 600
    assert cli.seconds("30m") == 1800 and cli.seconds("1.5h") == 5400 and cli.seconds("90") == 90
    assert cli.seconds("500ms") == 0.5


async def test_duration_run_with_the_default_timeout_is_not_an_error() -> None:
    duration = 0.5
    timeout = default_timeout(users=4, duration=duration, drain=1, request_timeout=1)
    config = LoadConfig(urls=("ws://127.0.0.1:1/ws",), users=4, window=1, rate=200, messages=None,
                        duration=duration, timeout=timeout, drain=1)  # fmt: skip
    result = await run_load(EchoDriver(), config)
    assert not result.deadline_hit and "deadline" not in result.stats.errors
    assert result.ok() and result.stats.delivered == result.stats.sent > 0


def read_result(out: Path) -> tuple[Path, dict[str, Any]]:
    [path] = out.glob("*.json")
    return path, json.loads(path.read_text())


@pytest.mark.timeout(180)
async def test_cli_duration_run_samples_the_servers(stack: Stack, tmp_path: Path) -> None:
    args = [arg for url in stack.gateway_urls for arg in ("--url", url)]
    args += ["--users", "4", "--rate", "40", "--duration", "2s", "--drain", "5", "--run", "soak", "--no-progress",
             "--no-leak-check", "--out", str(tmp_path)]  # fmt: skip
    # The CLI runs its own event loop; the in-process stack needs this one: run it in a thread.
    code = await asyncio.to_thread(cli.run, args)
    assert code == 0
    path, data = read_result(tmp_path)
    assert data["completed"] and data["summary"]["errors"] == {}
    servers = data["servers"]
    assert servers["processes"] and servers["note"].startswith("leak check:")
    for process in servers["processes"]:
        assert len(process["samples"]) >= 5 and process["trend"]["verdict"]
    assert (tmp_path / f"{path.stem}-servers.png").read_bytes().startswith(b"\x89PNG")
