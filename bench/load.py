"""The load every system gets, run by the load tester's own loop (:mod:`loadtest.runner`) and
measured by its :class:`loadtest.stats.RunStats`, so each system is measured the same way:
``users`` clients in pairs, each sending ``messages`` messages to its partner with at most
``window`` un-acked at a time (closed loop), then a bounded drain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from loadtest.driver import Driver
from loadtest.runner import LoadConfig, RunResult
from loadtest.runner import run_load as _runner_run_load

#: Hard bound on one system's run, setup included.
RUN_TIMEOUT = 180.0
DRAIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Shape:
    users: int = 200
    messages: int = 200
    window: int = 5

    def describe(self) -> str:
        return (f"{self.users} clients in {self.users // 2} pairs, {self.messages} messages each, "
                f"window {self.window}")


def summary(result: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = result.stats.summary(result.elapsed_s)
    out["setup_s"] = round(result.setup_s, 3)
    out["completed"] = not result.deadline_hit
    return out


async def run_load(
    driver: Driver,
    urls: Sequence[str],
    shape: Shape,
    *,
    drain_timeout: float = DRAIN_TIMEOUT,
    run_timeout: float = RUN_TIMEOUT,
    console: Console | None = None,
) -> RunResult:
    config = LoadConfig(
        urls=tuple(urls), users=shape.users, window=shape.window, messages=shape.messages,
        timeout=run_timeout, drain=drain_timeout,
    )
    return await _runner_run_load(driver, config, console=console)
