"""chat_service: dialogs, sending (ordered per dialog) and history, on the chat request stream."""

from __future__ import annotations

import asyncio
import contextlib
import math

from chat_service import store
from chat_service.handlers import ChatHandlers
from chat_service.history import HistoryReader
from chat_service.presence_fanout import run_fanout, run_sweeper
from chat_service.sequencer import Sequencer
from chatkit import keys
from chatkit.db import apply_schema, create_pool, expire_connections_every
from chatkit.dialogs import DialogKey
from chatkit.health import Health
from chatkit.ops_server import ops_server
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.service import RequestService
from chatkit.settings import Settings
from chatkit.stream_metrics import Watched
from chatkit.wire import Message


async def serve(settings: Settings) -> None:
    redis = RedisClient.from_url(settings.redis_url)
    streams = tuple(keys.chat_requests(tag) for tag in Partitions(settings.partitions).tags())
    health = Health(
        "chat_service", redis, [Watched(keys.CHAT_REQUESTS_FAMILY, keys.CHAT_GROUP, streams)], needs_database=True,
    )
    try:
        async with ops_server(health, settings.metrics_host, settings.metrics_port):
            await _serve(settings, redis, health)
    finally:
        await redis.close()


async def _serve(settings: Settings, redis: RedisClient, health: Health) -> None:
    pool = await create_pool(
        settings.database_url, wait_seconds=math.inf, max_queries=settings.database_max_tables_per_connection
    )
    expiring = asyncio.create_task(expire_connections_every(pool, settings.database_connection_life_seconds))
    try:
        await apply_schema(pool)
        health.pool = pool
        partitions = Partitions(settings.partitions)

        async def stored_message(key: DialogKey, seq: int) -> Message | None:
            found = await store.stored_messages(pool, key, after=seq - 1, before=seq + 1, limit=1, newest=False)
            return found[0] if found else None

        sequencer = Sequencer(redis, partitions, settings.client_msg_id_ttl_seconds, stored_message)
        handlers = ChatHandlers(settings, pool, sequencer, HistoryReader(redis, partitions, pool))
        service = RequestService(
            redis, settings, streams=[keys.chat_requests(tag) for tag in partitions.tags()], group=keys.CHAT_GROUP,
            handler=handlers.handle, health=health,
        )
        # Presence: peers told of changes, dead gateways swept (chat_service/presence_fanout.py).
        background = [
            asyncio.create_task(run_fanout(pool, redis, settings), name="presence-fanout"),
            asyncio.create_task(run_sweeper(redis, settings), name="presence-sweeper"),
        ]
        try:
            await service.run()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(service.drain())
    finally:
        expiring.cancel()
        health.pool = None
        await pool.close()
