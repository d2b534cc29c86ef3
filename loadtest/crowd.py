"""``--crowd N``: the shape real chats have: many users connected, few of them talking.

``N`` users end up connected, ``--active`` of them (2 % by default) talking in pairs across
gateways at a human rate (``--talk-every``: one message every 10 s each on average, exponential
gaps, open loop), the others idle. The talkers connect first and talk from then on; the idle
users connect in ``--stages`` equal steps, each followed by ``--stage-hold`` seconds at that
size. Each stage reports how long its ramp took, the end-to-end latency of the messages
delivered while it held, and the server processes' resident memory and CPU, per connected user.

Idle users log in with ``auth`` and a token of one of :data:`IDLE_ACCOUNTS` accounts that nobody
writes to (a password login each would make the ramp measure argon2, and a message to an idle
account would fan out to all of its connections): to the gateway each is a logged-in connection
like any other. Memory per user is marginal: (RSS of the gateways and services at the stage -
their RSS once the talkers were logged in) / idle users connected since, so the auth service's
one-off password-hashing memory and the talkers' own are left out; CPU per user is the
gateways' and services' CPU during the hold / connected users.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from chat_client import ChatClient
from loadtest.chat_driver import ChatDriver
from loadtest.connections import fetch_tokens
from loadtest.driver import SendError, message_key, url_of
from loadtest.progress import Snapshot, show_progress
from loadtest.runner import SetupError
from loadtest.servers import DATA_STORES, Sampler
from loadtest.stats import Histogram, RunStats

IDLE_ACCOUNTS = 16
CONNECT_CONCURRENCY = 64
_DRAIN_POLL_S = 0.05


@dataclass(frozen=True)
class CrowdConfig:
    urls: tuple[str, ...]
    connected: int = 2000
    active: float = 0.02
    talk_every: float = 10.0
    stages: int = 4
    stage_hold: float = 20.0
    drain: float = 10.0
    run: str = "crowd"

    @property
    def talkers(self) -> int:
        """Active users: ``connected * active``, even (they talk in pairs), at least 2."""
        wanted = max(2, round(self.connected * self.active))
        return wanted - wanted % 2

    def validate(self) -> None:
        if self.connected < 2:
            raise ValueError(f"--crowd must be at least 2, got {self.connected}")
        if not 0.0 < self.active <= 1.0:
            raise ValueError(f"--active must be a fraction in (0, 1], got {self.active}")
        if self.talkers > self.connected:
            raise ValueError(f"{self.talkers} talkers do not fit in {self.connected} connected users")
        if self.talk_every <= 0 or self.stages < 1 or self.stage_hold <= 0:
            raise ValueError("--talk-every and --stage-hold must be positive, --stages at least 1")

    def describe(self) -> str:
        return (f"{self.connected:,} connected users, {self.talkers:,} of them talking in pairs (one message every "
                f"{self.talk_every:g} s each on average), idle users ramped in {self.stages} stage(s), "
                f"each held {self.stage_hold:g} s")  # fmt: skip


class Crowd:
    """One crowd run; :attr:`stats` may be read at any time for progress."""

    def __init__(self, config: CrowdConfig, sampler: Sampler | None, console: Console | None) -> None:
        config.validate()
        self.config = config
        self.sampler = sampler
        self.console = console
        self.stats = RunStats(time.monotonic())
        self.driver = ChatDriver(config.run)
        self.idle: list[ChatClient] = []
        self.failures: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._counters = [0] * config.talkers
        self._idle_open = 0
        self.phase = "setup"
        self.began = time.monotonic()

    def snapshot(self) -> Snapshot:
        stats = self.stats
        return Snapshot(
            phase=f"{self.phase}, {self.connected:,} connected", elapsed=time.monotonic() - self.began,
            sent=stats.sent, acked=stats.acked, delivered=stats.delivered, errors=stats.error_count,
            p99_s=stats.end_to_end.percentile(99.0),
        )  # fmt: skip

    # --- the talkers --------------------------------------------------------------------------

    async def _talk(self, sender: int) -> None:
        rng = random.Random(sender)
        tasks: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), rng.expovariate(1.0 / self.config.talk_every))
                break
            self._counters[sender] += 1
            task = asyncio.create_task(self._send(sender, message_key(sender, self._counters[sender])))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _send(self, sender: int, key: str) -> None:
        self.stats.on_send(key, time.monotonic())
        try:
            await self.driver.send(sender, key)
        except SendError as error:
            self.stats.on_error(error.code, time.monotonic(), str(error))
        else:
            self.stats.on_ack(key, time.monotonic())

    # --- the idle crowd -----------------------------------------------------------------------

    async def _open_idle(self, count: int, tokens: Sequence[str]) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(n: int) -> None:
            async with gate:
                try:
                    client = await ChatClient.connect(url_of(n, self.config.urls))
                except Exception as error:
                    self._failed(error)
                    return
                self.idle.append(client)
                try:
                    await client.auth(tokens[n % len(tokens)])
                except Exception as error:
                    self._failed(error)
                    return
                self._idle_open += 1
                self.stats.on_connections(self.connected, time.monotonic())

        start = len(self.idle)
        await asyncio.gather(*(one(start + n) for n in range(count)))

    def _failed(self, error: Exception) -> None:
        reason = str(error) or type(error).__name__
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.stats.on_error("connect", time.monotonic(), reason)

    @property
    def connected(self) -> int:
        """Talkers connected plus idle users logged in (those whose connection dropped since
        included: :meth:`_hold` counts them again)."""
        return self.driver.open_connections() + self._idle_open

    def _recount(self) -> int:
        self._idle_open = sum(1 for client in self.idle if not client.closed)
        return self.connected

    # --- servers ------------------------------------------------------------------------------

    def _servers(self) -> tuple[float, float]:
        """RSS (bytes) and CPU seconds so far of the gateways and services (not the data stores)."""
        if self.sampler is None:
            return 0.0, 0.0
        self.sampler.sample()
        processes = [p for p in self.sampler.processes if p.name not in DATA_STORES]
        return sum(p.rss for p in processes), sum(p.cpu_seconds for p in processes)

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        config = self.config
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        began = self.began = time.monotonic()
        self._say(f"crowd: logging in {config.talkers} talkers and {IDLE_ACCOUNTS} idle accounts")
        self.phase = "setup"
        try:
            await self.driver.setup(config.talkers, list(config.urls))
            tokens = await fetch_tokens(config.urls, f"{config.run}-idle", IDLE_ACCOUNTS)
        except Exception as error:
            await self._close()
            raise SetupError(f"logging in {config.talkers} talkers and the idle accounts failed: {error!r}") from error
        await self.driver.start_receiving(self.stats.on_receive)
        rss_base, _ = self._servers()
        setup_s = time.monotonic() - began
        self.stats.start = self.stats.last_event = time.monotonic()
        self.stats.on_connections(self.connected, time.monotonic())
        talkers = [asyncio.create_task(self._talk(sender)) for sender in range(config.talkers)]
        stages: list[dict[str, Any]] = []
        try:
            idle_total = config.connected - config.talkers
            for stage in range(1, config.stages + 1):
                target = idle_total * stage // config.stages
                ramp_began = time.monotonic()
                self.phase = f"ramp {stage}/{config.stages}"
                await self._open_idle(target - len(self.idle), tokens)
                ramp_s = time.monotonic() - ramp_began
                stages.append(await self._hold(stage, ramp_s, rss_base))
        finally:
            self.phase = "drain"
            self._stop.set()
            await asyncio.gather(*talkers, return_exceptions=True)
            await self._drain()
            self.phase = "closing"
            await self._close()
        return self._result(started_at, setup_s, stages)

    async def _hold(self, stage: int, ramp_s: float, rss_base: float) -> dict[str, Any]:
        connected = self._recount()
        idle = self._idle_open
        self.phase = f"stage {stage}/{self.config.stages}"
        self._say(f"crowd: stage {stage}/{self.config.stages}: {connected:,} connected (ramp {ramp_s:.1f} s), "
                  f"holding {self.config.stage_hold:g} s")  # fmt: skip
        window = self.stats.window = Histogram()
        delivered_before = self.stats.delivered
        _, cpu_before = self._servers()
        held_from = time.monotonic()
        await asyncio.sleep(self.config.stage_hold)
        rss, cpu_after = self._servers()
        held = time.monotonic() - held_from
        self.stats.window = None
        cpu_percent = (cpu_after - cpu_before) / held * 100.0
        return {
            "stage": stage, "connected": connected, "talking": self.config.talkers, "ramp_s": round(ramp_s, 2),
            "latency_ms": window.summary(), "delivered": self.stats.delivered - delivered_before,
            "servers_rss_bytes": round(rss), "servers_cpu_percent": round(cpu_percent, 1),
            "rss_per_user_bytes": round((rss - rss_base) / idle) if idle else 0,
            "cpu_per_user_us_per_s": round(cpu_percent / 100.0 * 1e6 / connected, 2) if connected else 0.0,
        }  # fmt: skip

    async def _drain(self) -> None:
        until = time.monotonic() + self.config.drain
        for _ in range(int(self.config.drain / _DRAIN_POLL_S) + 1):
            if self.stats.all_delivered() or time.monotonic() >= until:
                return
            await asyncio.sleep(_DRAIN_POLL_S)

    async def _close(self) -> None:
        idle, self.idle = self.idle, []
        await asyncio.gather(*(client.close() for client in idle), return_exceptions=True)
        await self.driver.close()

    def _say(self, line: str) -> None:
        if self.console is not None:
            self.console.print(line, highlight=False)

    def _result(self, started_at: str, setup_s: float, stages: list[dict[str, Any]]) -> dict[str, Any]:
        stats = self.stats
        elapsed = max(stats.last_event - stats.start, 1e-9)
        config = self.config
        ramp = sum(stage["ramp_s"] for stage in stages)
        last = stages[-1] if stages else None
        note = (f"crowd: {config.describe()}; the ramp to {last['connected']:,} took {ramp:.1f} s in all"
                if last else "crowd: no stage completed")  # fmt: skip
        return {
            "tool": "chat-loadtest",
            "driver": "chat-crowd",
            "started_at": started_at,
            "config": {"mode": "crowd", **asdict(config), "urls": list(config.urls), "users": config.talkers,
                       "window": None, "rate": None, "messages": None, "duration": None,
                       "timeout": None},
            "setup_s": round(setup_s, 3),
            "completed": len(stages) == config.stages,
            "ok": stats.ok() and len(stages) == config.stages,
            "summary": stats.summary(elapsed),
            "series_bucket_s": stats.bucket_s,
            "series": stats.series(),
            "distribution": stats.distribution(),
            "crowd": {"stages": stages, "ramp_s": round(ramp, 2), "connect_failures": self.failures, "note": note},
        }


async def run_crowd(config: CrowdConfig, sampler: Sampler | None, console: Console | None) -> dict[str, Any]:
    """Run a crowd, sampling the servers with ``sampler`` (started and stopped here; their
    curves go under ``servers``, not judged for leaks); with a ``console``, say what each stage
    does and show live progress."""
    crowd = Crowd(config, sampler, console)
    progress = None if console is None else asyncio.create_task(show_progress(crowd.snapshot, console))
    if sampler is not None:
        sampler.start()
    try:
        data = await crowd.run()
    finally:
        if sampler is not None:
            await sampler.stop()
        if progress is not None:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
    if sampler is not None:
        data["servers"] = sampler.to_json(crowd.began, 0.0, judged_why_not="a crowd's ramp grows the servers by design")
    return data
