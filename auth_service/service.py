"""auth_service: serves register, login, auth and rename requests from the auth stream."""

from __future__ import annotations

import logging
import math

from auth_service.handlers import AuthHandler
from auth_service.passwords import Passwords
from auth_service.tokens import Tokens
from chatkit import keys
from chatkit.db import apply_schema, create_pool
from chatkit.partitions import Partitions
from chatkit.redis import RedisClient
from chatkit.service import RequestService
from chatkit.settings import Settings

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
    try:
        pool = await create_pool(settings.database_url, wait_seconds=math.inf)
        try:
            await apply_schema(pool)
            passwords = Passwords()
            await passwords.prepare()
            handler = AuthHandler(pool, passwords, tokens)
            streams = [keys.auth_requests(tag) for tag in Partitions(settings.partitions).tags()]
            service = RequestService(
                redis, settings, streams=streams, group=keys.AUTH_GROUP, handler=handler.handle
            )
            log.info("auth_service %s serving %s..%s", settings.instance, streams[0], streams[-1])
            try:
                await service.run()
            finally:
                await service.drain()
        finally:
            await pool.close()
    finally:
        await redis.close()
