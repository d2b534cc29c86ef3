"""bench/: the raw relays (the ceilings of `make bench`) carry every message of a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import Shape, run_load, summary
from bench.procs import Group
from bench.relay_driver import RelayDriver
from bench.run import table
from bench.systems import consecutive_free_ports
from tests.support.servers import Servers

SHAPE = Shape(users=10, messages=10, window=5)


async def _relay_run(tmp_path: Path, redis_url: str | None, processes: int) -> dict[str, object]:
    with Group(tmp_path / "logs") as group:
        ports = [consecutive_free_ports(1) for _ in range(processes)]
        for index, port in enumerate(ports):
            extra = ["--redis", redis_url] if redis_url else []
            group.spawn_python(f"relay-{index}", "bench.relay_server", "--port", str(port), *extra)
        group.wait_ports(ports, timeout=30)
        urls = [f"ws://127.0.0.1:{port}" for port in ports]
        if len(urls) == 1:
            urls *= 2
        result = await run_load(RelayDriver(), urls, SHAPE, drain_timeout=10)
        group.check()
        return summary(result)


def _assert_complete(summary: dict[str, object]) -> None:
    total = SHAPE.users * SHAPE.messages
    assert summary["sent"] == total
    assert summary["acked"] == total
    assert summary["delivered"] == total
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["misrouted"] == 0
    assert summary["errors"] == {}


async def test_single_process_relay_delivers_everything(tmp_path: Path) -> None:
    _assert_complete(await _relay_run(tmp_path, None, 1))


async def test_redis_relay_delivers_everything_across_processes(tmp_path: Path, servers: Servers) -> None:
    _assert_complete(await _relay_run(tmp_path, servers.redis_url, 2))


@pytest.mark.parametrize("no_ack", [False, True])
def test_table_has_ratios_and_marks_systems_without_acks(no_ack: bool) -> None:
    def result(rate: float) -> dict[str, object]:
        latency = {"p50": 1.0, "p99": 2.0, "max": 3.0}
        return {"delivered_per_s": rate, "lost": 0, "duplicated": 0, "errors": {},
                "latency_ms": {"end_to_end": latency, "ack": latency}, "no_ack": no_ack}

    text = table({"socketio": result(1000.0), "soketi": result(4000.0), "relay": result(8000.0)})
    relay_row = next(line for line in text.splitlines() if line.startswith("| raw relay, 1 process"))
    assert "| 8.00x | 2.00x |" in relay_row
    assert ("| n/a |" in relay_row) is no_ack
