"""Running an ASGI ``send`` without a task of its own.

The server's ``send`` only suspends while the transport is paused (its write buffer is over the
high-water mark); otherwise it writes and returns in its first step (for uvicorn, assumption 4
in gateway/server.py, checked by tests/test_uvicorn_contract.py). So a connection runs that
first step inline, from whoever pushed the frame, and only a send that really has to wait gets
a task: an idle connection owns no task, no queue, no coroutine frame. Were the premise false,
frames would still go out in order, each send that suspends getting a task."""

from __future__ import annotations

import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

Step = Coroutine[Any, Any, None]


def first_step(send: Awaitable[None]) -> tuple[Step, Any] | None:
    """Run ``send`` up to its first suspension. None if it finished (or failed: the socket
    is gone, and the connection's reader will notice); else the coroutine and what it is
    waiting on, to be finished by :func:`resume` in a task. Exceptions are the caller's."""
    if not isinstance(send, Coroutine):
        return _wrap(send), None
    try:
        blocked = send.send(None)
    except StopIteration:
        return None
    return send, blocked


@types.coroutine
def resume(step: Step, blocked: Any) -> Generator[Any, Any, None]:
    """Finish a coroutine whose first step ran inline and suspended on ``blocked``: the task
    running this waits on that future for it, then drives the rest."""
    if blocked is not None:
        try:
            yield blocked
        except BaseException:
            step.close()  # runs its finally blocks (e.g. Event.wait drops its waiter)
            raise
    yield from step


async def _wrap(awaitable: Awaitable[None]) -> None:
    await awaitable
