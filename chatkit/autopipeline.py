"""Automatic pipelining: Redis commands issued by concurrent tasks in the same turn of the
event loop go out together, as one pipeline (one write, one read), instead of one round trip
and one pair of system calls each. The same idea as ioredis' enableAutoPipelining.

Commands keep their own results and errors, and are executed in the order they were issued:
one pipeline is in flight at a time, and what is issued meanwhile forms the next one (so
batches grow with load, and a caller may issue without awaiting and still keep its order).
Blocking commands (XREADGROUP BLOCK, BLPOP) do not belong here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]


class AutoPipeline:
    def __init__(self, redis: Redis, *, max_batch: int = 512) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._flusher: asyncio.Task[None] | None = None

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command (``"PUBLISH", channel, data``); await the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._scheduled and self._flusher is None:
            self._scheduled = True
            # Wait one loop turn so that commands issued by other tasks now join this batch.
            loop.call_soon(self._start)
        return future

    @property
    def backlog(self) -> int:
        """Commands issued and not yet sent."""
        return len(self._pending)

    async def eval_script(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA, falling back to EVAL when the server lost its script cache (a restart)."""
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait([self._flusher], timeout=5)

    def _start(self) -> None:
        self._scheduled = False
        if self._flusher is None and self._pending:
            self._flusher = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
