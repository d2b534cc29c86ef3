"""auth_service: serves register, login, auth, rename and logout requests from the auth stream."""

from __future__ import annotations

import logging
import math

from auth_service.handlers import AuthHandler
from auth_service.passwords import Passwords
from auth_service.sessions import Sessions
from auth_service.tokens import Tokens
from chatkit import keys
from chatkit.db import apply_schema, create_pool
from chatkit.health import Health
from chatkit.ops_server import ops_server
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.service import RequestService
from chatkit.settings import Settings
from chatkit.stream_metrics import Watched

log = logging.getLogger(__name__)

# Below this an HMAC secret is guessable offline from any token a client holds.
_SHORT_SECRET_BYTES = 32


async def serve(settings: Settings) -> None:
    """Run until cancelled; then finish the requests already taken and close everything."""
    # Refuse before connecting anything: an empty secret would sign forgeable tokens.
    tokens = Tokens(settings.secret, settings.token_ttl_seconds)
    if len(settings.secret.encode()) < _SHORT_SECRET_BYTES:
        log.warning("CHAT_SECRET is shorter than %d bytes; use a long random one", _SHORT_SECRET_BYTES)
    redis = RedisClient.from_url(settings.redis_url)
    streams = tuple(keys.auth_requests(tag) for tag in Partitions(settings.partitions).tags())
    health = Health(
        "auth_service", redis, [Watched(keys.AUTH_REQUESTS_FAMILY, keys.AUTH_GROUP, streams)], needs_database=True,
    )
    try:
        async with ops_server(health, settings.metrics_host, settings.metrics_port):
            await _serve(settings, redis, tokens, health, streams)
    finally:
        await redis.close()


async def _serve(
    settings: Settings, redis: RedisClient, tokens: Tokens, health: Health, streams: tuple[str, ...],
) -> None:
    pool = await create_pool(settings.database_url, wait_seconds=math.inf)
    try:
        await apply_schema(pool)
        health.pool = pool
        passwords = Passwords()
        await passwords.prepare()
        handler = AuthHandler(pool, passwords, tokens, Sessions(redis, settings.token_ttl_seconds))
        service = RequestService(
            redis, settings, streams=streams, group=keys.AUTH_GROUP, handler=handler.handle,
            health=health,
        )
        log.info(
            "auth_service %s serving %s (%d partitions)", settings.instance, keys.AUTH_REQUESTS_FAMILY, len(streams),
        )
        try:
            await service.run()
        finally:
            await service.drain()
    finally:
        health.pool = None
        await pool.close()
