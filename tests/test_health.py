"""chatkit/health.py and chatkit/ops_server.py in process, on real Redis and PostgreSQL: each
reason a service is not ready shows in /readyz, and /metrics refreshes the stream gauges."""

from __future__ import annotations

import asyncio

import redis.asyncio

from chatkit import keys
from chatkit.db import create_pool
from chatkit.health import Health
from chatkit.ops_server import ops_server
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from chatkit.stream_metrics import Watched
from chatkit.streams import ensure_group
from devstack.embedded import free_port
from tests.support.ops_scrape import samples, value

WATCHED = [Watched(keys.CHAT_REQUESTS_FAMILY, keys.CHAT_GROUP), Watched(keys.DEAD_LETTERS)]


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_readyz_names_what_is_missing(settings: Settings, redis_client: RedisClient) -> None:
    health = Health("chat_service", redis_client, WATCHED, needs_database=True)
    async with ops_server(health, "127.0.0.1", free_port()) as port:
        assert port is not None
        status, body = await _get(port, "/readyz")
        assert status == 503
        assert "consumer group not joined yet" in body and "PostgreSQL not connected yet" in body
        assert f"consumer group {keys.CHAT_GROUP} of {keys.CHAT_REQUESTS_FAMILY} does not exist" in body
        await ensure_group(redis_client, keys.CHAT_REQUESTS_FAMILY, keys.CHAT_GROUP)
        health.group_joined()
        health.pool = await create_pool(settings.database_url)
        try:
            assert await _get(port, "/readyz") == (200, "ready\n")
            # Redis lost its data: the group is gone, and readiness says so.
            await redis_client.call("DEL", keys.CHAT_REQUESTS_FAMILY)
            status, body = await _get(port, "/readyz")
            assert status == 503 and "does not exist" in body
        finally:
            await health.pool.close()
        assert await _get(port, "/healthz") == (200, "ok\n")


async def test_readyz_when_redis_is_unreachable() -> None:
    gone = RedisClient.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        health = Health("auth_service", gone, WATCHED, needs_database=False)
        health.group_joined()
        problems = await health.problems()
        assert len(problems) == 1 and problems[0].startswith("Redis unreachable"), problems
    finally:
        await gone.close()


async def test_metrics_sample_streams_at_scrape(settings: Settings, redis_client: RedisClient) -> None:
    rds = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        await ensure_group(redis_client, keys.CHAT_REQUESTS_FAMILY, keys.CHAT_GROUP)
        for n in range(5):
            await rds.xadd(keys.CHAT_REQUESTS_FAMILY, {"n": n})
        await rds.xreadgroup(keys.CHAT_GROUP, "reader-1", {keys.CHAT_REQUESTS_FAMILY: ">"}, count=2)
        await rds.xadd(keys.DEAD_LETTERS, {"n": 1})
    finally:
        await rds.aclose()
    health = Health("chat_service", redis_client, WATCHED, needs_database=False)
    async with ops_server(health, "127.0.0.1", free_port()) as port:
        assert port is not None
        status, text = await _get(port, "/metrics")
    assert status == 200
    found = samples(text)
    group = {"stream": keys.CHAT_REQUESTS_FAMILY, "group": keys.CHAT_GROUP}
    assert value(found, "chat_stream_length", stream=keys.CHAT_REQUESTS_FAMILY) == 5
    assert value(found, "chat_stream_group_pending", **group) == 2
    assert value(found, "chat_stream_group_lag", **group) == 3
    assert value(found, "chat_stream_group_consumers", **group) == 1
    assert value(found, "chat_stream_length", stream=keys.DEAD_LETTERS) == 1
    assert value(found, "chat_ready", service="chat_service") == 0  # never joined


async def test_no_port_no_server(redis_client: RedisClient) -> None:
    async with ops_server(Health("x", redis_client, [], needs_database=False), "127.0.0.1", 0) as port:
        assert port is None
