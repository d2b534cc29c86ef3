"""Running a service process: settings from the environment (here and only here), logging,
uvloop, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from chatkit.settings import Settings

Serve = Callable[[Settings], Awaitable[None]]


def configure_logging(settings: Settings, name: str) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
        runner.run(_until_signal(serve(settings)))


async def _until_signal(main: Awaitable[None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopped")
