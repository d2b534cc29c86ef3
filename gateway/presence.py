"""A gateway's part of presence (chatkit/presence.py): its heartbeat, and telling Redis when a
user gets their first logged-in connection here or loses their last.

The registry's hooks only queue the change (they must not wait on Redis); one task applies
the queue in order, so a user's join and leave reach Redis in the order they happened here.
When the heartbeat finds it had expired (Redis was unreachable for longer than the ttl, and a
sweeper took this gateway's users offline), every user still connected here joins again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from chatkit import presence
from chatkit.redis import REDIS_DOWN, RedisClient

log = logging.getLogger(__name__)

# Changes applied in one script call, at most.
BATCH = 500


class GatewayPresence:
    def __init__(
        self, redis: RedisClient, gateway_id: str, ttl_seconds: float, users: Callable[[], Iterable[int]],
    ) -> None:
        self.redis = redis
        self.gateway_id = gateway_id
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.users = users
        self._changes: asyncio.Queue[tuple[bool, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await presence.heartbeat(self.redis, self.gateway_id, self.ttl_ms)
        except REDIS_DOWN as exc:
            log.warning("first presence heartbeat failed (%s); retrying", exc)
        self._tasks = [
            asyncio.create_task(self._apply(), name="presence"),
            asyncio.create_task(self._beat(), name="heartbeat"),
        ]

    async def stop(self) -> None:
        """Apply what is queued, then end this gateway's presence (its users go offline)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changes.join(), 2)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await asyncio.wait_for(presence.end(self.redis, self.gateway_id), 2)
        except REDIS_DOWN as exc:  # OSError covers the timeout
            log.warning("could not end presence of gateway %s (%s); it expires", self.gateway_id, exc)

    def joined(self, user_id: int) -> None:
        self._changes.put_nowait((True, user_id))

    def left(self, user_id: int) -> None:
        self._changes.put_nowait((False, user_id))

    async def _apply(self) -> None:
        while True:
            online, user = await self._changes.get()
            batch = [user]
            while len(batch) < BATCH and not self._changes.empty():
                nxt = self._changes.get_nowait()
                if nxt[0] != online:
                    await self._send(online, batch)
                    self._done(len(batch))
                    online, batch = nxt[0], []
                batch.append(nxt[1])
            await self._send(online, batch)
            self._done(len(batch))

    def _done(self, n: int) -> None:
        for _ in range(n):
            self._changes.task_done()

    async def _send(self, online: bool, users: list[int]) -> None:
        try:
            if online:
                await presence.join(self.redis, self.gateway_id, users)
            else:
                await presence.leave(self.redis, self.gateway_id, users)
        except REDIS_DOWN as exc:
            # At most once: the next heartbeat that finds itself expired joins everyone again.
            log.warning("presence change of %d users not recorded (%s)", len(users), exc)
        except Exception:
            # Anything else (an error reply) must not stop the changes after it.
            log.exception("presence change of %d users failed", len(users))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await presence.heartbeat(self.redis, self.gateway_id, self.ttl_ms):
                    log.warning("gateway %s: heartbeat had expired; its users join again", self.gateway_id)
                    for user in list(self.users()):
                        self.joined(user)
            except REDIS_DOWN as exc:
                log.warning("presence heartbeat failed (%s)", exc)
            except Exception:
                log.exception("presence heartbeat failed")
