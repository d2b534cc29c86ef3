"""What a service's ``/readyz`` means: Redis answers, PostgreSQL answers (for a service that
needs it), and the service has joined its stream's consumer group, which still exists. Checked
on each request of ``/readyz`` or ``/metrics``, never cached: a probe sees the present."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from chatkit import metrics
from chatkit.redis import REDIS_DOWN, RedisClient
from chatkit.stream_metrics import StreamSampler, Watched

log = logging.getLogger(__name__)

# A check that takes longer than this fails: a probe must answer before its own timeout.
CHECK_SECONDS = 2.0


class Health:
    def __init__(self, service: str, redis: RedisClient, watched: list[Watched], *, needs_database: bool) -> None:
        self.service = service
        self.redis = redis
        self.needs_database = needs_database
        self.sampler = StreamSampler(redis, watched)
        # Set by the service once it connected (None: not yet).
        self.pool: asyncpg.Pool | None = None
        self.joined = False
        self._ready_gauge = metrics.READY.labels(service)

    def group_joined(self) -> None:
        """The service joined its consumer group and reads from it: logs the one "ready" line."""
        if not self.joined:
            self.joined = True
            log.info("%s ready", self.service)

    async def problems(self) -> list[str]:
        """Everything that keeps this process from being ready (empty: ready). Also refreshes
        the stream gauges and ``chat_ready``."""
        try:
            found = await asyncio.wait_for(self._problems(), CHECK_SECONDS)
        except TimeoutError:
            found = [f"readiness checks took longer than {CHECK_SECONDS:g} s"]
        self._ready_gauge.set(0 if found else 1)
        return found

    async def _problems(self) -> list[str]:
        found: list[str] = []
        if not self.joined:
            found.append("consumer group not joined yet")
        try:
            await self.redis.call("PING")
            found += await self.sampler.sample()
        except REDIS_DOWN as exc:
            found.append(f"Redis unreachable: {exc}")
        if self.needs_database:
            found += await self._database()
        return found

    async def _database(self) -> list[str]:
        if self.pool is None:
            return ["PostgreSQL not connected yet"]
        try:
            async with self.pool.acquire(timeout=CHECK_SECONDS) as conn:
                await conn.fetchval("SELECT 1", timeout=CHECK_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return [f"PostgreSQL unreachable: {type(exc).__name__}: {exc}"]
        return []
