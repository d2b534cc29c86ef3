"""The ceilings: a bare relay with none of the backend's work (no auth, no sequencing, no storage).

``python -m bench.relay_server --port P``                 one process, in-memory user -> connection
``python -m bench.relay_server --port P --redis URL``     one of several processes, relaying over
                                                          Redis pub/sub, one channel per user

Protocol (text frames, JSON): a client connects to ``/<user id>``; it sends
``{"to": <user>, "key": "<key>", "n": <n>}``; the server forwards ``{"key": "<key>"}`` to that
user's connection and answers the sender ``{"ack": <n>}`` once the forward is done (written to
the local connection, or PUBLISH returned).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import msgspec
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

CHANNEL_PREFIX = "bench:relay:user:"
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


class Relay:
    def __init__(self, redis_url: str | None) -> None:
        self.users: dict[int, ServerConnection] = {}
        self.redis: aioredis.Redis | None = None
        self.pubsub: Any = None
        if redis_url:
            pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64)
            self.redis = aioredis.Redis(connection_pool=pool)
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)

    async def handle(self, ws: ServerConnection) -> None:
        user = int(ws.request.path.strip("/")) if ws.request is not None else -1
        self.users[user] = ws
        if self.pubsub is not None:
            await self.pubsub.subscribe(CHANNEL_PREFIX + str(user))
        await ws.send('{"ready":true}')
        try:
            async for data in ws:
                frame = _decode(data)
                forward = _encode({"key": frame["key"]})
                if self.redis is not None:
                    await self.redis.publish(CHANNEL_PREFIX + str(frame["to"]), forward)
                else:
                    target = self.users.get(frame["to"])
                    if target is not None:
                        with contextlib.suppress(ConnectionClosed):
                            await target.send(forward.decode())
                await ws.send(f'{{"ack":{int(frame["n"])}}}')
        except ConnectionClosed:
            pass
        finally:
            if self.users.get(user) is ws:
                del self.users[user]
                if self.pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self.pubsub.unsubscribe(CHANNEL_PREFIX + str(user))

    async def listen(self) -> None:
        """Forward what Redis delivers on a user's channel to that user's connection here."""
        assert self.pubsub is not None
        prefix = len(CHANNEL_PREFIX)
        while True:
            message = await self.pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            target = self.users.get(int(message["channel"][prefix:]))
            if target is not None:
                with contextlib.suppress(ConnectionClosed):
                    await target.send(message["data"].decode())


async def main(port: int, redis_url: str | None) -> None:
    relay = Relay(redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listener = None
    if relay.pubsub is not None:
        # Connect the subscriber before any client can: concurrent first subscribes would each
        # open a connection of their own, and all but one subscription would be lost.
        await relay.pubsub.subscribe(CHANNEL_PREFIX + "none")
        listener = asyncio.create_task(relay.listen())
    async with serve(relay.handle, "127.0.0.1", port, compression=None, max_size=2**16):
        await stop.wait()
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    if relay.redis is not None:
        await relay.pubsub.aclose()
        await relay.redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default=None, help="relay over this Redis's pub/sub (one process of several)")
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.port, args.redis))


if __name__ == "__main__":
    cli()
