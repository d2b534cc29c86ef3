"""Running a service process: settings from the environment (here and only here), logging,
uvloop, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from chatkit import logs
from chatkit.settings import Settings

Serve = Callable[[Settings], Awaitable[None]]


def configure_logging(settings: Settings, name: str) -> None:
    logs.configure(name, settings.log_level, settings.log_format)


def run(name: str, serve: Serve, *, young_gc_threshold: int | None = None) -> None:
    """Build settings, then run ``serve(settings)`` until SIGINT/SIGTERM; exit 0 on a clean stop.

    ``young_gc_threshold``: tracked allocations between collections of the youngest generation
    (CPython's default is 700), for a service that keeps thousands of short-lived containers
    alive at once: at 700 they are scanned, and promoted, several times over before they die."""
    settings = Settings.from_env()
    configure_logging(settings, name)
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop_factory = None
    # Everything imported so far lives as long as the process: moved out of the collector's
    # sight, it is no longer traversed by every full collection the hot paths trigger.
    gc.freeze()
    if young_gc_threshold is not None:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_gc_threshold, older, oldest)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_until_signal(name, serve(settings)))


async def _until_signal(name: str, main: Awaitable[None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The one line an operator looks for after a stop (a crash logs its traceback instead).
    logging.getLogger(__name__).info("%s stopped", name)
