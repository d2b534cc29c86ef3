"""A gateway paused (SIGSTOP, or its loop blocked) is not reported as losing Redis when it runs
again: the PING's timer is long due then, and uvloop (what the gateway runs on) fires due timers
before it reads the PONG waiting in the socket (gateway/health.py)."""

from __future__ import annotations

import asyncio
import time

import uvloop

from chatkit.redis import RedisClient
from gateway.health import PING_TIMEOUT_SECONDS, STALL_SECONDS, ping_ok
from tests.support.servers import Servers

PAUSE_SECONDS = PING_TIMEOUT_SECONDS + STALL_SECONDS + 1.0


def test_a_ping_across_a_pause_is_answered(servers: Servers) -> None:
    async def scenario() -> tuple[bool, bool]:
        client = RedisClient.from_url(servers.redis_url)
        try:
            assert await ping_ok(client)  # connected
            probe = asyncio.ensure_future(ping_ok(client))
            await asyncio.sleep(0)  # the PING is written
            time.sleep(PAUSE_SECONDS)  # the whole process stops, as under SIGSTOP  # noqa: ASYNC251
            after_pause = await probe
            return after_pause, await ping_ok(client)
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        after_pause, later = runner.run(scenario())
    assert after_pause, "a PING answered while this process was paused was reported as Redis unreachable"
    assert later
