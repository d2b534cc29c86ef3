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
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from gateway.broker_redis import RedisBroker
from gateway.connections import Connection, Registry
from gateway.deadlines import Deadlines
from gateway.health import ping_ok
from gateway.metrics import GatewayMetrics
from gateway.protocol import Forward, error_frame, route
from gateway.relay import Relay, sync_started
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
        self.metrics = GatewayMetrics(lambda: len(self.registry.connections))
        self.registry.hooks.on_push = self.metrics.frame_sent
        self.registry.hooks.on_slow = self.metrics.slow_consumers.inc
        self.deadlines = Deadlines(settings.request_timeout_seconds)
        self.relay = Relay(self.broker, self.registry, self.channel, self.deadlines, self.metrics)
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.subscribe(self.channel)
        await self.broker.connect()
        self._relay_task = asyncio.create_task(self.relay.run(), name="relay")
        log.info("gateway %s ready on %s:%d", self.id, self.settings.host, self.settings.port)

    async def stop(self) -> None:
        # The server has closed every client with 1001 by now (gateway/server.py).
        log.debug("gateway %s stopped", self.id)
        self.deadlines.close()
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        await self.broker.disconnect()
        await self.pipeline.close()

    async def redis_ok(self) -> bool:
        """Whether requests can be forwarded: asked on the connection that forwards them."""
        return await ping_ok(self.pipeline)

    async def serve_socket(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """One `/ws` connection, on the bare ASGI callables (see gateway/app.py). No header is
        read here: the server lets them go at accept (gateway/server.py)."""
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = self.registry.add(send, self.settings.send_queue_limit, transport_abort(scope))
        log.debug("connection %s open", conn.id)
        code = 1006
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is None:
                        self.metrics.binary.inc()
                        conn.push(BINARY_FRAME_ERROR)
                        continue
                    await self._on_frame(conn, text)
                elif kind == "websocket.disconnect":
                    code = message.get("code", 1005)
                    break
        finally:
            self.metrics.closed(code)
            log.debug("connection %s closed (%s)", conn.id, code)
            await self.registry.remove(conn)

    async def _on_frame(self, conn: Connection, text: str) -> None:
        if self.deadlines.logins and conn.id in self.deadlines.logins:
            # A login or auth in flight here: this frame is handled as the user it establishes.
            await self.deadlines.login_settled(conn)
        action = route(text, conn.user, self.partitions)
        if not isinstance(action, Forward):
            self.metrics.rejected.inc()
            conn.push(action.frame)
            return
        kind = self.metrics.kinds[type(action.frame)]
        kind.received.inc()
        number = self.deadlines.begin(conn, kind, action.frame.ref)
        request = Request(gateway=self.id, conn=conn.id, user=conn.user, frame=action.frame, request=number)
        if kind.sync:
            sync_started(conn)
        # Not awaited: the pipeline keeps this connection's frames in order, and the next
        # frame need not wait for this one's round trip. A deep backlog is the exception.
        added = self.pipeline.call(
            "XADD", action.stream, "MAXLEN", "~", REQUEST_STREAM_MAXLEN, "*", ENTRY_FIELD, _encode(request)
        )
        added.add_done_callback(lambda done: self._forwarded(done, number))
        if self.pipeline.backlog > MAX_FORWARD_BACKLOG:
            await asyncio.wait([added])

    def _forwarded(self, done: asyncio.Future[Any], number: int) -> None:
        if done.cancelled() or done.exception() is None:
            return
        log.warning("could not forward a request: %s", done.exception())
        self.deadlines.fail(number, "the service is unreachable; try again shortly")

    async def _subscribe_user(self, user_id: int) -> None:
        await self.broker.subscribe(keys.user_channel(user_id))

    async def _unsubscribe_user(self, user_id: int) -> None:
        await self.broker.unsubscribe(keys.user_channel(user_id))
