"""Fixtures: one embedded Valkey and one embedded PostgreSQL for the session (or the servers
named by CHAT_REDIS_URL / CHAT_DATABASE_URL), a fresh database and an empty Redis per test.
Per-test time limits, and the ``slow`` marker: tests/support/timeouts.py."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

from chatkit.redis import RedisClient
from chatkit.settings import Settings
from devstack.embedded import start_postgres, start_valkey
from tests.support.servers import Servers
from tests.support.stack import Stack, start_stack

pytest_plugins = ("tests.support.timeouts",)

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    redis_url = os.environ.get("CHAT_REDIS_URL")
    database_url = os.environ.get("CHAT_DATABASE_URL")
    root: Path = tmp_path_factory.mktemp("servers")
    valkey = None if redis_url else start_valkey(root / "valkey", log_file=root / "valkey.log")
    postgres = None if database_url else start_postgres(root / "pg", durable=False, log_file=root / "pg.log")
    try:
        yield Servers(
            redis_url=redis_url or (valkey.url if valkey else ""),
            database_url=database_url or (postgres.url if postgres else ""),
            valkey=valkey,
            postgres=postgres,
        )
    finally:
        for server in (valkey, postgres):
            if server is not None:
                server.stop()


@pytest.fixture
async def settings(servers: Servers) -> AsyncIterator[Settings]:
    """Settings pointing at an empty Redis and a database of this test's own."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    client = redis.asyncio.Redis.from_url(servers.redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    base, _, _ = servers.database_url.rpartition("/")
    yield Settings(
        redis_url=servers.redis_url,
        database_url=f"{base}/{name}",
        secret="test-secret-not-for-production",
        claim_idle_ms=2000,
    )


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    running = await start_stack(settings)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def rds(settings: Settings) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    """The project's own Redis client (chatkit/redis/) on this test's empty Redis."""
    client = RedisClient.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.close()
