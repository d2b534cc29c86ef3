"""Redis connections that survive a server restart: commands retry with backoff."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a Redis call raises when the server went away; callers back off and go on.
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str, *, retries: int = 3, max_connections: int = 64, wait_seconds: float = 10.0) -> Redis:
    """A client whose commands retry a few times on a dropped connection before raising, so a
    brief restart is invisible to callers. The pool blocks (up to ``wait_seconds``) when all
    its connections are busy: a burst queues for a connection instead of failing."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
    client = Redis(
        connection_pool=pool,
        decode_responses=False,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    # The client owns this pool: aclose() must close its connections too.
    client.auto_close_connection_pool = True
    return client
