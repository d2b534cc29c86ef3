"""One gateway: its connections, its subscription, and forwarding client frames to the
services' request streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import msgspec

from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD, Request
from chatkit.partitions import Partitions
from chatkit.redis import REDIS_DOWN, RedisClient
from chatkit.settings import Settings
from chatkit.wire import Sync
from gateway.broker_redis import RedisBroker
from gateway.connections import Connection, Registry
from gateway.protocol import Forward, error_frame, route
from gateway.relay import Relay, sync_failed, sync_started
from gateway.types import ASGIReceive, ASGISend, Scope, transport_abort

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode

BINARY_FRAME_ERROR = error_frame("bad_frame", "expected a text frame, got a binary one")

# Requests nobody consumed (all replicas of a service down for long) are dropped past this;
# their clients have timed out long before.
REQUEST_STREAM_MAXLEN = 100_000
# Requests queued for Redis beyond which a connection waits for its own to go out.
MAX_FORWARD_BACKLOG = 5_000


class GatewayNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions = Partitions(settings.partitions)
        self.id = uuid.uuid4().hex[:12]
        self.channel = keys.gateway_channel(self.id)
        self.pipeline = RedisClient.from_url(settings.redis_url)
        self.broker = RedisBroker(settings.redis_url)
        self.registry = Registry(self.id, self._subscribe_user, self._unsubscribe_user)
        self.relay = Relay(self.broker, self.registry, self.channel)
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.subscribe(self.channel)
        await self.broker.connect()
        self._relay_task = asyncio.create_task(self.relay.run(), name="relay")
        log.info("gateway %s up", self.id)

    async def stop(self) -> None:
        # The server has closed every client with 1001 by now (gateway/server.py).
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        await self.broker.disconnect()
        await self.pipeline.close()

    async def redis_ok(self) -> bool:
        """Whether requests can be forwarded: asked on the connection that forwards them."""
        try:
            return bool(await asyncio.wait_for(self.pipeline.call("PING"), 2) == b"PONG")
        except REDIS_DOWN:  # OSError covers TimeoutError and ConnectionError too
            return False

    async def serve_socket(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """One `/ws` connection, on the bare ASGI callables (see gateway/app.py). No header is
        read here: the server lets them go at accept (gateway/server.py)."""
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = self.registry.add(send, self.settings.send_queue_limit, transport_abort(scope))
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is None:
                        conn.push(BINARY_FRAME_ERROR)
                        continue
                    await self._on_frame(conn, text)
                elif kind == "websocket.disconnect":
                    break
        finally:
            await self.registry.remove(conn)

    async def _on_frame(self, conn: Connection, text: str) -> None:
        action = route(text, conn.user, self.partitions)
        if not isinstance(action, Forward):
            conn.push(action.frame)
            return
        request = Request(gateway=self.id, conn=conn.id, user=conn.user, frame=action.frame)
        is_sync = isinstance(action.frame, Sync)
        if is_sync:
            sync_started(conn)
        # Not awaited: the pipeline keeps this connection's frames in order, and the next
        # frame need not wait for this one's round trip. A deep backlog is the exception.
        added = self.pipeline.call(
            "XADD", action.stream, "MAXLEN", "~", REQUEST_STREAM_MAXLEN, "*", ENTRY_FIELD, _encode(request)
        )
        ref = action.frame.ref
        added.add_done_callback(lambda done: self._forwarded(done, conn, ref, is_sync))
        if self.pipeline.backlog > MAX_FORWARD_BACKLOG:
            await asyncio.wait([added])

    @staticmethod
    def _forwarded(done: asyncio.Future[Any], conn: Connection, ref: str | None, is_sync: bool) -> None:
        if done.cancelled() or done.exception() is None:
            return
        log.warning("could not forward a request: %s", done.exception())
        conn.push(error_frame("unavailable", "the service is unreachable; try again shortly", ref=ref))
        if is_sync:
            sync_failed(conn)

    async def _subscribe_user(self, user_id: int) -> None:
        await self.broker.subscribe(keys.user_channel(user_id))

    async def _unsubscribe_user(self, user_id: int) -> None:
        await self.broker.unsubscribe(keys.user_channel(user_id))
