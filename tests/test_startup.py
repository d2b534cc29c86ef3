"""A service started while PostgreSQL is unreachable keeps retrying (auth_service and
chat_service with no deadline; the storage worker likewise) and serves once the database is
back: nothing needs a manual restart."""

from __future__ import annotations

import asyncio

from chatkit import wire
from chatkit.settings import Settings
from tests.support.fake_gateway import FakeGateway
from tests.support.stack import running
from tests.support.tcp_proxy import TcpProxy


async def test_auth_service_waits_for_postgres_then_serves(settings: Settings) -> None:
    from auth_service.service import serve

    proxy = TcpProxy.for_url(settings.database_url)
    await proxy.start()
    url = proxy.url(settings.database_url)
    await proxy.stop()  # the port is known now, and nothing answers on it
    try:
        async with (
            running(serve, settings.with_overrides(database_url=url)) as task,
            FakeGateway.open(settings.redis_url) as gateway,
        ):
            await asyncio.sleep(1.5)  # several backoff rounds
            assert not task.done(), "the service gave up while PostgreSQL was away"
            await proxy.start()
            _, frame = await gateway.call(
                wire.Register(username="patient", email="patient@example.org", password="long enough"),
                timeout=30,
            )
            assert isinstance(frame, wire.Registered), frame
            assert frame.user.username == "patient"
    finally:
        await proxy.stop()
