"""The plain-websocket connections a bench driver holds, one per user: opened together and
closed together, the same way for every driver that speaks a raw WebSocket protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection


async def connect_all(
    conns: list[ClientConnection],
    users: int,
    connect: Callable[[int], Awaitable[ClientConnection]],
    concurrency: int,
) -> None:
    """``connect(user)`` for users ``0 .. users-1``, at most ``concurrency`` at a time, appending
    each connection to ``conns`` in user order. Raises the first failure; the connections not
    appended by then are cancelled, or closed if they were made."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(user: int) -> ClientConnection:
        async with gate:
            return await connect(user)

    # Kept one by one, so close() finds every connection that was made even if one failed.
    tasks = [asyncio.create_task(gated(user)) for user in range(users)]
    try:
        for task in tasks:
            conns.append(await task)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                ws = await task
                if ws not in conns:
                    await ws.close()


async def close_all(conns: list[ClientConnection], readers: list[asyncio.Task[None]]) -> None:
    """Cancel the reader tasks, close the connections, wait for both, and empty both lists."""
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    conns.clear()
    readers.clear()
