"""One gateway: its connections, its subscription, and forwarding client frames to the
services' request streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import msgspec

from chatkit import keys, ratelimit
from chatkit.envelopes import ENTRY_FIELD, Request
from chatkit.partitions import Partitions
from chatkit.redis import REDIS_DOWN, NoScript, RedisClient
from chatkit.settings import Settings
from chatkit.wire import ClientFrame, Send
from gateway.broker_redis import RedisBroker
from gateway.connections import Connection, Registry
from gateway.deadlines import Deadlines
from gateway.handshake import handshake_checks
from gateway.health import ping_ok
from gateway.limits import (
    CLOSE_TOO_MANY_REQUESTS,
    TOO_MANY_REQUESTS_REASON,
    ConnectionLimits,
    Leases,
    Policy,
    limited_what,
)
from gateway.metrics import GatewayMetrics
from gateway.presence import GatewayPresence
from gateway.protocol import Forward, error_frame, rate_limited, route, salvage_ref
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
        self.policy = Policy.of(settings)
        self.leases = Leases(window=1.0)
        self.relay = Relay(
            self.broker, self.registry, self.channel, self.deadlines, self.metrics, self.policy.connections_per_user
        )
        self.presence = GatewayPresence(self.pipeline, self.id, settings.presence_ttl_seconds,
                                        lambda: self.registry.by_user.keys())
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.subscribe(self.channel)
        await self.broker.connect()
        self._relay_task = asyncio.create_task(self.relay.run(), name="relay")
        await self.presence.start()
        log.info("gateway %s ready on %s:%d", self.id, self.settings.host, self.settings.port)

    async def stop(self) -> None:
        # The server has closed every client with 1001 by now (gateway/server.py).
        log.debug("gateway %s stopped", self.id)
        self.deadlines.close()
        await self.presence.stop()
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
        address = await handshake_checks(scope, send, self.policy, len(self.registry.connections))
        if address is None:
            return
        await send({"type": "websocket.accept"})
        conn = self.registry.add(send, self.settings.send_queue_limit, transport_abort(scope))
        log.debug("connection %s open", conn.id)
        limits = self.policy.connection_limits(asyncio.get_running_loop().time())
        code = 1006
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if not self._admitted(conn, limits, text):
                        continue
                    if text is None:
                        self.metrics.binary.inc()
                        conn.push(BINARY_FRAME_ERROR)
                        continue
                    await self._on_frame(conn, text, limits, address)
                elif kind == "websocket.disconnect":
                    code = message.get("code", 1005)
                    break
        finally:
            self.metrics.closed(code)
            log.debug("connection %s closed (%s)", conn.id, code)
            await self.registry.remove(conn)

    def _admitted(self, conn: Connection, limits: ConnectionLimits, text: str | None) -> bool:
        """Requests per connection (gateway/limits.py): over the limit, `rate_limited`."""
        if conn.closing:
            return False
        wait = self.policy.admit(limits, asyncio.get_running_loop().time())
        if wait:
            self._refuse(conn, limits, rate_limited("requests on this connection", wait, salvage_ref(text or "")))
            return False
        return True

    def _refuse(self, conn: Connection, limits: ConnectionLimits, frame: bytes) -> None:
        conn.push(frame)
        if limits.refused(self.policy.strikes):
            log.info("connection %s kept going over its limits; closing it", conn.id)
            conn.close(CLOSE_TOO_MANY_REQUESTS, TOO_MANY_REQUESTS_REASON)

    async def _on_frame(self, conn: Connection, text: str, limits: ConnectionLimits, address: str) -> None:
        if self.deadlines.logins and conn.id in self.deadlines.logins:
            # A login or auth in flight here: this frame is handled as the user it establishes.
            await self.deadlines.login_settled(conn)
        action = route(text, conn.user, self.partitions)
        if not isinstance(action, Forward):
            self.metrics.rejected.inc()
            conn.push(action.frame)
            return
        frame = action.frame
        if isinstance(frame, Send) and conn.user is not None and not await self._message_allowed(conn, limits, frame):
            return
        kind = self.metrics.kinds[type(frame)]
        kind.received.inc()
        number = self.deadlines.begin(conn, kind, frame.ref)
        request = Request(
            gateway=self.id, conn=conn.id, user=conn.user, session=conn.session, frame=frame, request=number
        )
        if kind.sync:
            sync_started(conn)
        # Not awaited: the pipeline keeps this connection's frames in order, and the next
        # frame need not wait for this one's round trip. A deep backlog is the exception.
        buckets = self.policy.buckets(frame, conn.user, address)
        if buckets:  # the shared limits are checked by the script that forwards it
            call = ratelimit.limited_add(buckets, action.stream, REQUEST_STREAM_MAXLEN, ENTRY_FIELD, _encode(request))
            added = self.pipeline.call("EVALSHA", ratelimit.SHA, *call)
        else:
            call = ()
            added = self.pipeline.call(
                "XADD", action.stream, "MAXLEN", "~", REQUEST_STREAM_MAXLEN, "*", ENTRY_FIELD, _encode(request)
            )
        added.add_done_callback(lambda done: self._forwarded(done, conn, limits, frame, number, call))
        if self.pipeline.backlog > MAX_FORWARD_BACKLOG:
            await asyncio.wait([added])

    async def _message_allowed(self, conn: Connection, limits: ConnectionLimits, frame: Send) -> bool:
        """The user's shared message budget: a leased token, or a lease from Redis first."""
        assert conn.user is not None
        user_id = conn.user.id
        if self.leases.take(user_id, asyncio.get_running_loop().time()):
            return True
        args = ratelimit.lease(self.policy.message_bucket(user_id), self.policy.message_handful)
        try:
            try:
                granted, wait = await self.pipeline.call("EVALSHA", ratelimit.LEASE_SHA, *args)
            except NoScript:  # Redis lost its script cache (a restart)
                granted, wait = await self.pipeline.call("EVAL", ratelimit.LEASE_SCRIPT, *args)
        except REDIS_DOWN as exc:
            log.warning("could not check a message limit: %s", exc)
            conn.push(error_frame("unavailable", "the service is unreachable; try again shortly", ref=frame.ref))
            return False
        if granted < 1:
            self._refuse(conn, limits, rate_limited("messages", int(wait), frame.ref))
            return False
        self.leases.granted(user_id, int(granted), asyncio.get_running_loop().time())
        return True

    def _forwarded(
        self, done: asyncio.Future[Any], conn: Connection, limits: ConnectionLimits, frame: ClientFrame,
        number: int, script_call: tuple[Any, ...],
    ) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            wait = done.result()
            if isinstance(wait, int) and wait > 0:  # the script refused it: a shared limit
                entry = self.deadlines.take(number)
                if entry is not None:
                    self.deadlines.settled(entry)
                self._refuse(conn, limits, rate_limited(limited_what(frame), wait, frame.ref))
            else:
                limits.passed()
            return
        if isinstance(error, NoScript) and script_call:
            # Redis lost its script cache (a restart): EVAL loads it again. Only this request
            # can fall behind the connection's next one, once per restart.
            retried = self.pipeline.call("EVAL", ratelimit.SCRIPT, *script_call)
            retried.add_done_callback(lambda again: self._forwarded(again, conn, limits, frame, number, ()))
            return
        log.warning("could not forward a request: %s", error)
        self.deadlines.fail(number, "the service is unreachable; try again shortly")

    async def _subscribe_user(self, user_id: int) -> None:
        self.presence.joined(user_id)  # queued before the await: a leave cannot overtake it
        await self.broker.subscribe(keys.user_channel(user_id))

    async def _unsubscribe_user(self, user_id: int) -> None:
        self.leases.drop(user_id)
        self.presence.left(user_id)
        await self.broker.unsubscribe(keys.user_channel(user_id))
