"""The load loop every system gets: ``users`` clients in pairs, each sending ``messages``
messages to its partner with at most ``window`` un-acked at a time, measured by
:class:`loadtest.stats.RunStats` (the load tester's own bookkeeping), with a progress line per
second and a bounded drain at the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.driver import Driver, SendError, message_key
from loadtest.stats import RunStats


@dataclass(frozen=True)
class Shape:
    users: int = 200
    messages: int = 200
    window: int = 5

    def describe(self) -> str:
        return (f"{self.users} clients in {self.users // 2} pairs, {self.messages} messages each, "
                f"window {self.window}")


@dataclass
class LoadResult:
    stats: RunStats
    #: From the first send to the last delivery (or to the end of sending, if later).
    elapsed: float
    setup_seconds: float

    def summary(self) -> dict[str, Any]:
        out = self.stats.summary(self.elapsed)
        out["setup_s"] = round(self.setup_seconds, 3)
        return out


async def run_load(
    driver: Driver,
    urls: Sequence[str],
    shape: Shape,
    *,
    drain_timeout: float = 10.0,
    run_timeout: float = 180.0,
    progress: Callable[[str], None] = print,
) -> LoadResult:
    """Set up, send everything, wait (at most ``drain_timeout``) for the stragglers, close."""
    setup_started = time.monotonic()
    try:
        await asyncio.wait_for(driver.setup(shape.users, urls), run_timeout)
        setup_seconds = time.monotonic() - setup_started
        start = time.monotonic()
        stats = RunStats(start)
        last_receive = start

        def on_message(receiver: int, key: str, now: float) -> None:
            nonlocal last_receive
            last_receive = max(last_receive, now)
            stats.on_receive(receiver, key, now)

        await driver.start_receiving(on_message)
        reporter = asyncio.create_task(_report(stats, shape, progress))
        try:
            await asyncio.wait_for(_send_all(driver, stats, shape), run_timeout)
            sent_done = time.monotonic()
            deadline = sent_done + drain_timeout
            # Bounded polling: all_delivered() is a set comparison, too costly to run per message.
            while not stats.all_delivered() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        elapsed = max(last_receive, sent_done) - start
        progress(_line(stats, shape, time.monotonic() - start) + " (done)")
        return LoadResult(stats, elapsed, setup_seconds)
    finally:
        await driver.close()


async def _send_all(driver: Driver, stats: RunStats, shape: Shape) -> None:
    async def sender(user: int) -> None:
        counters = iter(range(1, shape.messages + 1))

        async def slot() -> None:
            for counter in counters:
                key = message_key(user, counter)
                stats.on_send(key, time.monotonic())
                try:
                    await driver.send(user, key)
                except SendError as error:
                    stats.on_error(error.code, time.monotonic())
                else:
                    stats.on_ack(key, time.monotonic())

        await asyncio.gather(*(slot() for _ in range(shape.window)))

    await asyncio.gather(*(sender(user) for user in range(shape.users)))


async def _report(stats: RunStats, shape: Shape, progress: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(1.0)
        progress(_line(stats, shape, time.monotonic() - stats.start))


def _line(stats: RunStats, shape: Shape, elapsed: float) -> str:
    total = shape.users * shape.messages
    return (f"  {elapsed:5.1f}s sent {stats.sent}/{total} acked {stats.acked} delivered {stats.delivered} "
            f"errors {stats.error_count}")
