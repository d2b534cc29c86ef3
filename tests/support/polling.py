"""Waiting for the system to settle: the one helper every test uses instead of a sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

# How long a condition may take to come true before the test fails. Generous on purpose: on a
# busy machine a condition that holds in milliseconds alone can take seconds.
DEFAULT_TIMEOUT = 30.0
INTERVAL = 0.02

T = TypeVar("T")


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T]], *, timeout: float = ..., what: str | Callable[[], str] = ...,
    tasks: Iterable[asyncio.Task[None]] = ...,
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T], *, timeout: float = ..., what: str | Callable[[], str] = ...,
    tasks: Iterable[asyncio.Task[None]] = ...,
) -> T: ...


async def wait_until(
    condition: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT,
    what: str | Callable[[], str] = "the condition", tasks: Iterable[asyncio.Task[None]] = (),
) -> Any:
    """Call ``condition`` (plain or async) until it returns something true, and return that.

    Fails with an AssertionError naming ``what`` (a string, or a function called at the time of
    failure so it can say what was last seen) after ``timeout`` seconds; fails at once (the
    task's own error as the cause) when one of ``tasks`` (services the wait depends on) ends.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    watched = list(tasks)
    while True:
        result = condition()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        for task in watched:
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise AssertionError(f"{task.get_name()} stopped while waiting for {_text(what)}") from error
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {_text(what)}")
        await asyncio.sleep(INTERVAL)


def _text(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


async def wait_for_value(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, *, timeout: float = DEFAULT_TIMEOUT,
) -> T:
    """:func:`wait_until` for a probe whose result is tested by ``done`` and wanted back: the
    last result is named in the failure."""
    seen: list[T] = []

    async def check() -> bool:
        seen[:] = [await probe()]
        return done(seen[0])

    await wait_until(check, timeout=timeout, what=lambda: f"{what}; last saw {seen[0]!r}" if seen else what)
    return seen[0]
