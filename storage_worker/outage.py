"""Logging an outage of a backing server once when it starts and once when it ends, however
many retries happen in between, and pacing those retries."""

from __future__ import annotations

import asyncio
import logging
import time

from chatkit.backoff import Backoff

log = logging.getLogger(__name__)


class Outage:
    def __init__(self, server: str) -> None:
        self.server = server
        self._since: float | None = None
        self._backoff = Backoff()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def down(self, exc: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning("%s unreachable (%s: %s); retrying with backoff until it is back",
                        self.server, type(exc).__name__, exc)

    def up(self) -> None:
        if self._since is not None:
            log.warning("%s reachable again after %.1fs", self.server, time.monotonic() - self._since)
            self._since = None
            self._backoff.reset()

    async def pause(self) -> None:
        # A retry loop is where a swallowed cancellation would otherwise spin forever.
        raise_if_cancelled()
        await self._backoff.wait()


def raise_if_cancelled() -> None:
    """Stop if this task was asked to. A cancellation that lands while asyncpg connects can
    come out as a connection error (which create_pool retries) or not at all; the task's
    pending cancel request is what still tells."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
