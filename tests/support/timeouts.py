"""Per-test time limits that end a test in order (a pytest plugin, loaded by tests/conftest.py).

pytest-timeout's limit (60 s, pyproject.toml) interrupts the event loop wherever it is: the
test's own tasks (services, clients) are then never cancelled nor closed, and the run ends in
warnings about unclosed connections instead of the one failure that matters. So an async test
also runs under an asyncio timeout that expires a little earlier: the test is cancelled inside
its loop, its ``finally`` blocks and context managers run, then the fixtures' teardowns.
pytest-timeout stays the backstop for a test stuck outside the loop.

A test marked ``slow`` (it does a lot of work, and on a busy machine it can take minutes) gets
SLOW_TIMEOUT_SECONDS instead of the default; ``@pytest.mark.timeout(n)`` still wins.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

SLOW_TIMEOUT_SECONDS = 300.0
# Left between the asyncio timeout and pytest-timeout's, for the cancelled test and the
# fixtures to tear down.
TEARDOWN_MARGIN_SECONDS = 10.0

_started = pytest.StashKey[float]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_SECONDS))
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _within_limit(item, item.obj)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # pytest-timeout's clock starts with the setup: so does this one.
    item.stash[_started] = time.monotonic()


def limit_of(item: pytest.Item) -> float:
    """The test's limit in seconds as pytest-timeout sees it (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.kwargs.get("timeout", marker.args[0] if marker.args else 0)
    else:
        value = item.config.getini("timeout") or 0
    return float(value)


def _within_limit(
    item: pytest.Function, test: Callable[..., Coroutine[Any, Any, None]]
) -> Callable[..., Coroutine[Any, Any, None]]:
    @functools.wraps(test)
    async def limited(**kwargs: Any) -> None:
        limit = limit_of(item)
        if limit <= 0:
            await test(**kwargs)
            return
        started = item.stash.get(_started, time.monotonic())
        left = started + limit - TEARDOWN_MARGIN_SECONDS - time.monotonic()
        limiter = asyncio.timeout(max(left, 1.0))
        try:
            async with limiter:
                await test(**kwargs)
        except TimeoutError as exc:
            if not limiter.expired():
                raise  # the test's own TimeoutError
            raise TimeoutError(
                f"{item.nodeid} ran past its {limit:g} s limit (less {TEARDOWN_MARGIN_SECONDS:g} s kept for "
                "teardown); mark it slow if it needs more, or see the traceback for what it waited on"
            ) from exc

    return limited
