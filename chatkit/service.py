"""The loop shared by the request-handling services (auth_service, chat_service): read client
requests from the streams of every partition, hand each to a handler as a typed :class:`Request`, publish what the
handler answers, acknowledge. A request is acknowledged only once its answer is published, so a
replica killed mid-request leaves it pending for another replica to claim."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from chatkit import keys
from chatkit.backoff import Backoff
from chatkit.envelopes import ConnReply, Request, UserEvent
from chatkit.errors import RequestError, Unavailable
from chatkit.health import Health
from chatkit.logs import request_id
from chatkit.metrics import RequestMetrics
from chatkit.redis import REDIS_DOWN, RedisClient
from chatkit.settings import Settings
from chatkit.streams import Entry, StreamConsumer, ensure_groups
from chatkit.wire import Error, Reply, UserRef

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode_request = msgspec.json.Decoder(Request).decode


@dataclass(slots=True)
class Outbox:
    """What a handler answers: one direct reply, and events for users' connections."""

    request: Request
    # The stream entry the request came in, and its stream, for a handler that acknowledges it itself.
    entry_id: bytes = b""
    stream: str = ""
    # Set by a handler that published its reply and acknowledged the entry itself.
    answered: bool = False
    reply_frame: Reply | None = None
    login: UserRef | None = None
    session: str | None = None
    logout: bool = False
    identity: UserRef | None = None
    positions: dict[str, int] | None = None
    events: list[tuple[int, UserEvent]] = field(default_factory=list)

    def reply(
        self, frame: Reply, *, login: UserRef | None = None, identity: UserRef | None = None,
        positions: dict[str, int] | None = None, session: str | None = None, logout: bool = False,
    ) -> None:
        frame.ref = self.request.frame.ref
        self.reply_frame = frame
        self.login = login
        self.session = session
        self.logout = logout
        self.identity = identity
        self.positions = positions

    def to_user(self, user_id: int, frame: Reply, *, skip_own: bool = False,
                identity: UserRef | None = None, end_session: str | None = None) -> None:
        event = UserEvent(
            frame=msgspec.Raw(_encode(frame)),
            skip_conn=self.request.conn if skip_own else None,
            identity=identity,
            end_session=end_session,
        )
        self.events.append((user_id, event))


Handler = Callable[[Request, Outbox], Awaitable[None]]


class RequestService:
    def __init__(
        self, redis: RedisClient, settings: Settings, *, streams: Sequence[str], group: str, handler: Handler,
        health: Health | None = None,
    ) -> None:
        """``redis`` is shared with the handler (the caller closes it); the consumer's blocking
        reads take a link of their own from it. ``health`` is told when the group is joined."""
        self.redis = redis
        self.health = health
        self.metrics = RequestMetrics(group)
        self.settings = settings
        self.streams = list(streams)
        self.handler = handler
        self.consumer = StreamConsumer(
            redis, self.streams, group, settings.instance,
            claim_idle_ms=settings.claim_idle_ms, max_deliveries=settings.max_deliveries,
        )
        self._slots = asyncio.Semaphore(settings.service_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve until cancelled; a Redis outage pauses the loop instead of ending it."""
        backoff = Backoff()
        while True:
            try:
                await ensure_groups(self.redis, self.streams, self.consumer.group)
                backoff.reset()
                if self.health is not None:
                    self.health.group_joined()
                await self._serve()
            except REDIS_DOWN as exc:
                log.warning("Redis unreachable (%s); retrying", exc)
                await backoff.wait()

    async def drain(self, timeout: float = 10.0) -> None:
        """Let requests already taken finish (on shutdown). Those still running after
        ``timeout`` are cancelled, so no task outlives the service; unacknowledged, they stay
        pending for another replica to claim."""
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.consumer.close()

    async def _serve(self) -> None:
        while True:
            await self._slots.acquire()
            free = 1
            # Take as many entries as there are free slots, without waiting for more.
            while free < 100 and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                entries = await self.consumer.read(free)
            except BaseException:
                self._release(free)
                raise
            self._release(free - len(entries))
            for entry in entries:
                task = asyncio.create_task(self._handle(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _release(self, n: int) -> None:
        for _ in range(n):
            self._slots.release()

    async def _handle(self, entry: Entry) -> None:
        try:
            await self._handle_entry(entry)
        except REDIS_DOWN as exc:
            # The entry stays pending and is claimed again once Redis is back.
            log.warning("could not answer %s: Redis unreachable (%s)", entry.id.decode(), exc)
        except Exception:
            log.exception("failed on stream entry %s", entry.id.decode())
        finally:
            self._slots.release()

    async def _handle_entry(self, entry: Entry) -> None:
        started = time.perf_counter()
        request_id.set(entry.id.decode())
        try:
            request = _decode_request(entry.data)
        except msgspec.DecodeError as exc:
            # Only our own gateways write here: a malformed entry is a bug, park it.
            await self.consumer.dead_letter(entry, f"undecodable request: {exc}")
            self.metrics.done("unknown", "undecodable", started)
            return
        frame_type: str = request.frame.__struct_config__.tag  # type: ignore[assignment]
        outcome = "ok"
        outbox = Outbox(request, entry_id=entry.id, stream=entry.stream)
        try:
            await self.handler(request, outbox)
        except RequestError as exc:
            outcome = "rejected"
            outbox.reply(Error(code=exc.code, message=exc.message))
        except Unavailable as exc:
            outcome = "unavailable"
            outbox.reply(Error(code="unavailable", message=f"try again shortly: {exc}"))
        except REDIS_DOWN:
            self.metrics.done(frame_type, "redis_down", started)
            raise
        except Exception:
            # A bug or a surprise from a backing server: answer now rather than let the
            # client time out; retrying is the client's call (sends are idempotent).
            log.exception("request %s failed", entry.id.decode())
            outcome = "internal"
            outbox.reply(Error(code="internal", message="the server failed on this request"))
        if outcome == "ok" and isinstance(outbox.reply_frame, Error):
            # A handler that answered with an error frame itself.
            outcome = outbox.reply_frame.code if outbox.reply_frame.code in ("unavailable", "internal") else "rejected"
        if not outbox.answered:
            try:
                await self._publish(entry, outbox)
            except REDIS_DOWN:
                self.metrics.done(frame_type, "redis_down", started)
                raise
        self.metrics.done(frame_type, outcome, started)

    async def _publish(self, entry: Entry, outbox: Outbox) -> None:
        request = outbox.request
        calls = [
            self.redis.call("PUBLISH", keys.user_channel(user_id), _encode(event))
            for user_id, event in outbox.events
        ]
        if outbox.reply_frame is not None:
            reply = ConnReply(
                conn=request.conn,
                frame=msgspec.Raw(_encode(outbox.reply_frame)),
                login=outbox.login,
                session=outbox.session,
                logout=outbox.logout,
                identity=outbox.identity,
                positions=outbox.positions,
                answers=request.frame.__struct_config__.tag,  # type: ignore[arg-type]
                request=request.request,
            )
            calls.append(self.redis.call("PUBLISH", keys.gateway_channel(request.gateway), _encode(reply)))
        calls.append(self.redis.call("XACK", entry.stream, self.consumer.group, entry.id))
        await asyncio.gather(*calls)
