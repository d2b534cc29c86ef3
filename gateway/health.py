"""Is Redis reachable from here: a PING on the connection requests are forwarded on, with a
deadline that a pause of this process does not trip.

A process stopped with SIGSTOP (or a loop blocked for long) wakes up with the PING's timer long
due and Redis's PONG unread in the socket; uvloop runs due timers before it reads sockets, so a
plain ``wait_for`` reports Redis unreachable when it was this process that was away. A timer
that fired much later than due is therefore not believed: the PING gets a fresh wait."""

from __future__ import annotations

import asyncio

from chatkit.redis import REDIS_DOWN, RedisClient

PING_TIMEOUT_SECONDS = 2.0
# A timer this much later than due says the process itself was not running.
STALL_SECONDS = 1.0


async def ping_ok(client: RedisClient, timeout: float = PING_TIMEOUT_SECONDS) -> bool:
    loop = asyncio.get_running_loop()
    # Shielded: a reply future the link settles in turn is never cancelled from here.
    pong = asyncio.ensure_future(client.call("PING"))
    while True:
        started = loop.time()
        try:
            return bool(await asyncio.wait_for(asyncio.shield(pong), timeout) == b"PONG")
        except TimeoutError:
            if loop.time() - started <= timeout + STALL_SECONDS:
                return False
            # Paused meanwhile: wait again for the answer that may be unread.
        except REDIS_DOWN:  # OSError: refused, reset, lost
            return False
