"""Redis connections that survive a server restart: commands retry with backoff."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a Redis call raises when the server went away; callers back off and go on.
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str, *, retries: int = 3, max_connections: int = 64) -> Redis:
    """A client (lazily connected pool) whose commands retry a few times on a dropped
    connection before raising, so a brief restart is invisible to callers."""
    return Redis.from_url(
        url,
        decode_responses=False,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        max_connections=max_connections,
    )
