"""The load loop: set up a :class:`~loadtest.driver.Driver`, send, wait for the deliveries, and
hand back what :class:`~loadtest.stats.RunStats` saw.

Two ways to pace senders:

- **window** (no ``rate``): each user keeps ``window`` messages in flight, sending the next one as
  soon as one is acked (closed loop: measures what the system sustains).
- **rate**: ``rate`` messages per second in total, spread evenly over users and over time, each
  user still holding at most ``window`` un-acked messages (open loop). Latency is measured from
  each message's *scheduled* time, so time spent queued behind a full window counts
  (no coordinated omission).

A run ends after ``messages`` per user or after ``duration`` seconds of sending, then waits up to
``drain`` seconds for the last deliveries. ``timeout`` bounds the whole run, setup included: when
it passes, sending stops, the ``deadline`` error is counted and the run reports what it has.
:func:`default_timeout` gives a ``--duration`` run room for its setup, its duration, the last
acks and the drain, so a run that did what it was asked never meets its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from loadtest.driver import Driver, SendError, message_key
from loadtest.progress import Snapshot, show_progress
from loadtest.stats import RunStats
from loadtest.urls import check_ws_url, require_loopback

CLOSE_TIMEOUT_S = 15.0
_DRAIN_POLL_S = 0.01
_CONNECTIONS_POLL_S = 0.5
#: The deadline of a run by message count, when none is given.
MESSAGES_TIMEOUT_S = 600.0
#: Room for setup in a derived deadline: a fixed part plus a part per user (a login each).
SETUP_ALLOWANCE_S = 120.0
SETUP_ALLOWANCE_PER_USER_S = 0.05


def default_timeout(*, users: int, duration: float | None, drain: float, request_timeout: float) -> float:
    """The hard deadline when none is given: for a ``duration`` run, setup allowance + duration +
    one request timeout (the last sends' acks) + drain; otherwise :data:`MESSAGES_TIMEOUT_S`."""
    if duration is None:
        return MESSAGES_TIMEOUT_S
    setup = SETUP_ALLOWANCE_S + SETUP_ALLOWANCE_PER_USER_S * users
    return setup + duration + request_timeout + drain


class SetupError(Exception):
    """The driver could not set up the users in time, or at all."""


@dataclass(frozen=True)
class LoadConfig:
    urls: tuple[str, ...]
    users: int = 20
    window: int = 5
    rate: float | None = None
    messages: int | None = 100
    duration: float | None = None
    timeout: float = 600.0
    drain: float = 10.0
    allow_remote: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` (``RemoteURLError`` for a non-loopback URL) on a bad shape."""
        if not self.urls:
            raise ValueError("at least one URL is needed")
        for url in self.urls:
            check_ws_url(url)
        require_loopback(self.urls, allow_remote=self.allow_remote)
        if self.users < 2 or self.users % 2:
            raise ValueError(f"--users must be even and at least 2 (users talk in pairs), got {self.users}")
        if self.window < 1:
            raise ValueError(f"--window must be at least 1, got {self.window}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"--rate must be positive, got {self.rate}")
        if (self.messages is None) == (self.duration is None):
            raise ValueError("give exactly one of --messages and --duration")
        if self.messages is not None and self.messages < 1:
            raise ValueError(f"--messages must be at least 1, got {self.messages}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"--duration must be positive, got {self.duration}")
        if self.timeout <= 0 or self.drain < 0:
            raise ValueError("--timeout must be positive and the drain time not negative")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "urls": list(self.urls), "mode": "rate" if self.rate else "window"}


@dataclass
class RunResult:
    config: LoadConfig
    driver: str
    started_at: str
    setup_s: float
    elapsed_s: float
    stats: RunStats
    deadline_hit: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        return self.stats.ok() and not self.deadline_hit

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": "chat-loadtest",
            "driver": self.driver,
            "started_at": self.started_at,
            "config": self.config.to_json(),
            "setup_s": round(self.setup_s, 3),
            "completed": not self.deadline_hit,
            "ok": self.ok(),
            "summary": self.stats.summary(self.elapsed_s),
            "series_bucket_s": self.stats.bucket_s,
            "series": self.stats.series(),
            "distribution": self.stats.distribution(),
            **self.extra,
        }


class _Load:
    """The sending side of one run."""

    def __init__(self, driver: Driver, config: LoadConfig, stats: RunStats) -> None:
        self._driver = driver
        self._config = config
        self._stats = stats
        self._counters = [0] * config.users
        self._stop_at = None if config.duration is None else stats.start + config.duration

    def _next_key(self, sender: int, at: float) -> str | None:
        if self._config.messages is not None and self._counters[sender] >= self._config.messages:
            return None
        if self._stop_at is not None and at >= self._stop_at:
            return None
        self._counters[sender] += 1
        return message_key(sender, self._counters[sender])

    async def _send(self, sender: int, key: str, started: float) -> None:
        self._stats.on_send(key, started)
        try:
            await self._driver.send(sender, key)
        except SendError as error:
            self._stats.on_error(error.code, time.monotonic(), str(error))
        except Exception as error:  # a driver bug must not stop the other senders
            self._stats.on_error(type(error).__name__, time.monotonic(), repr(error))
        else:
            self._stats.on_ack(key, time.monotonic())

    async def _windowed(self, sender: int) -> None:
        while (key := self._next_key(sender, time.monotonic())) is not None:
            await self._send(sender, key, time.monotonic())

    async def _paced(self, sender: int, rate: float) -> None:
        interval = self._config.users / rate
        first = self._stats.start + interval * sender / self._config.users
        window = asyncio.Semaphore(self._config.window)
        async with asyncio.TaskGroup() as group:
            for n in range(1 << 62):
                scheduled = first + n * interval
                key = self._next_key(sender, scheduled)
                if key is None:
                    break
                await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                await window.acquire()
                group.create_task(self._paced_send(sender, key, scheduled, window))

    async def _paced_send(self, sender: int, key: str, scheduled: float, window: asyncio.Semaphore) -> None:
        try:
            await self._send(sender, key, scheduled)
        finally:
            window.release()

    async def run(self) -> None:
        rate = self._config.rate
        async with asyncio.TaskGroup() as group:
            for sender in range(self._config.users):
                if rate is None:
                    for _ in range(self._config.window):
                        group.create_task(self._windowed(sender))
                else:
                    group.create_task(self._paced(sender, rate))


class LoadRun:
    """One run of ``driver`` with ``config``; :meth:`snapshot` may be read at any time."""

    def __init__(self, driver: Driver, config: LoadConfig) -> None:
        config.validate()
        self.driver = driver
        self.config = config
        self.phase = "setup"
        self._began = time.monotonic()
        self._deadline = self._began + config.timeout
        self.stats = RunStats(self._began)

    def snapshot(self) -> Snapshot:
        stats = self.stats
        return Snapshot(
            phase=self.phase,
            elapsed=time.monotonic() - self._began,
            sent=stats.sent,
            acked=stats.acked,
            delivered=stats.delivered,
            errors=stats.error_count,
            p99_s=stats.end_to_end.percentile(99.0),
        )

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    async def run(self) -> RunResult:
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        try:
            setup_s = await self._setup()
            deadline_hit = await self._load()
            await self._drain()
        finally:
            self.phase = "closing"
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.driver.close()
            self.phase = "done"
        stats = self.stats
        elapsed = max(stats.last_event - stats.start, 1e-9)
        return RunResult(self.config, self.driver.name, started_at, setup_s, elapsed, stats, deadline_hit)

    async def _setup(self) -> float:
        try:
            async with asyncio.timeout(self._remaining()):
                await self.driver.setup(self.config.users, list(self.config.urls))
        except TimeoutError:
            raise SetupError(f"setting up {self.config.users} users took longer than --timeout") from None
        except Exception as error:
            raise SetupError(f"setting up {self.config.users} users failed: {error!r}") from error
        await self.driver.start_receiving(self.stats.on_receive)
        now = time.monotonic()
        setup_s = now - self._began
        # The per-second series and the throughput start with the load, not with setup.
        self.stats.start = self.stats.last_event = now
        return setup_s

    async def _load(self) -> bool:
        self.phase = "load"
        watcher = asyncio.create_task(self._watch_connections())
        try:
            async with asyncio.timeout(self._remaining()):
                await _Load(self.driver, self.config, self.stats).run()
        except TimeoutError:
            self.stats.on_error("deadline", time.monotonic(), "sending stopped at the hard deadline (--timeout)")
            return True
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return False

    async def _watch_connections(self) -> None:
        """Record the driver's open connections over time, if it can tell them."""
        count = getattr(self.driver, "open_connections", None)
        self.stats.on_connections(count() if callable(count) else self.config.users, time.monotonic())
        while callable(count):
            await asyncio.sleep(_CONNECTIONS_POLL_S)
            now_open = count()
            if now_open != self.stats.connections:
                self.stats.on_connections(now_open, time.monotonic())

    async def _drain(self) -> None:
        self.phase = "drain"
        until = min(time.monotonic() + self.config.drain, self._deadline)
        for _ in range(math.ceil(self.config.drain / _DRAIN_POLL_S)):
            if self.stats.all_delivered() or time.monotonic() >= until:
                return
            await asyncio.sleep(_DRAIN_POLL_S)


async def run_load(driver: Driver, config: LoadConfig, *, console: Console | None = None) -> RunResult:
    """Run ``config`` against ``driver``; with a ``console``, show live progress on it."""
    run = LoadRun(driver, config)
    if console is None:
        return await run.run()
    progress = asyncio.create_task(show_progress(run.snapshot, console))
    try:
        return await run.run()
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
