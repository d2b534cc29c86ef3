"""A service started while PostgreSQL is unreachable keeps retrying (auth_service and
chat_service with no deadline; the storage worker likewise) and serves once the database is
back: nothing needs a manual restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest
import redis.asyncio

from chatkit import wire
from chatkit.db import dialog_table_ddl
from chatkit.dialogs import DialogKey
from chatkit.settings import Settings
from tests.support import layout
from tests.support.db import wait_rows
from tests.support.fake_gateway import FakeGateway
from tests.support.polling import wait_until
from tests.support.stack import running
from tests.support.stream_messages import message, publish
from tests.support.tcp_proxy import TcpProxy

# Connection attempts refused before the database comes back: several rounds of backoff.
ATTEMPTS = 3


@pytest.fixture
async def outage(settings: Settings) -> AsyncIterator[TcpProxy]:
    """A proxy in front of PostgreSQL that refuses every connection until ``admit()``."""
    proxy = TcpProxy.for_url(settings.database_url)
    proxy.refuse()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def users(db: asyncpg.Connection) -> list[int]:
    """Two users, written directly (the services under test are not serving yet)."""
    await db.execute(resources.files("chatkit").joinpath("schema.sql").read_text())
    return [
        await db.fetchval(
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            name, f"{name}@example.org",
        )
        for name in ("alice", "bob")
    ]


async def sit_out_the_outage(outage: TcpProxy, service: asyncio.Task[None]) -> None:
    """Wait until the service has tried PostgreSQL several times, still running, then let it in."""
    await wait_until(
        lambda: outage.refused >= ATTEMPTS, tasks=[service], what=f"{ATTEMPTS} attempts to reach PostgreSQL"
    )
    outage.admit()


async def test_auth_service_waits_for_postgres_then_serves(settings: Settings, outage: TcpProxy) -> None:
    from auth_service.service import serve

    proxied = settings.with_overrides(database_url=outage.url(settings.database_url))
    async with running(serve, proxied) as task, FakeGateway.open(settings.redis_url) as gateway:
        await sit_out_the_outage(outage, task)
        _, frame = await gateway.call(
            wire.Register(username="patient", email="patient@example.org", password="long enough"), timeout=30
        )
        assert isinstance(frame, wire.Registered), frame
        assert frame.user.username == "patient"


async def test_chat_service_waits_for_postgres_then_serves(
    settings: Settings, outage: TcpProxy, users: list[int]
) -> None:
    from chat_service.service import serve

    proxied = settings.with_overrides(database_url=outage.url(settings.database_url))
    alice = wire.UserRef(id=users[0], username="alice")
    async with running(serve, proxied) as task, FakeGateway.open(settings.redis_url) as gateway:
        await sit_out_the_outage(outage, task)
        _, frame = await gateway.call(
            wire.OpenDialog(username="bob"), user=alice, stream=layout.CHAT_REQUESTS[0], timeout=30
        )
        assert isinstance(frame, wire.DialogReply), frame
        assert frame.dialog.peer == wire.UserRef(id=users[1], username="bob")


async def test_storage_worker_waits_for_postgres_then_stores(
    settings: Settings, outage: TcpProxy, users: list[int], db: asyncpg.Connection, rds: redis.asyncio.Redis
) -> None:
    from storage_worker.service import serve

    key = DialogKey.of(*users)
    await db.execute(dialog_table_ddl(key))
    await publish(rds, message(key, 1, users[0]))
    proxied = settings.with_overrides(database_url=outage.url(settings.database_url))
    async with running(serve, proxied) as task:
        await sit_out_the_outage(outage, task)
        stored = await wait_rows(db, key.id, 1)
    assert [(r["seq"], r["sender_id"]) for r in stored] == [(1, users[0])]
