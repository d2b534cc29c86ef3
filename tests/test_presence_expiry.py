"""Presence outlives no gateway: one killed with kill -9 (real processes) has its users shown
offline and announced offline within the documented bound, and when it comes back under the
same name it is a new gateway that inherits none of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from chat_client import ChatClient
from chatkit import keys
from tests.support.live_events import peer_online, presence_of, pushes_until
from tests.support.processes import ProcessStack
from tests.support.users import PASSWORD

pytestmark = pytest.mark.timeout(150)

TTL_SECONDS = 1.5


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessStack]:
    stack = ProcessStack(tmp_path)
    (tmp_path / "logs").mkdir()
    try:
        stack.start_servers(presence_ttl_seconds=TTL_SECONDS)
        stack.start("auth_service", "auth_service")
        stack.start("chat_service", "chat_service")
        stack.start("storage_worker", "storage_worker")
        yield stack
    finally:
        stack.stop()


async def test_a_gateway_killed_takes_its_users_offline_and_a_restart_inherits_none(
    processes: ProcessStack,
) -> None:
    first_url = processes.start_gateway("gateway-1")
    other_url = processes.start_gateway("gateway-2")
    clients: list[ChatClient] = []
    rds = redis.asyncio.Redis.from_url(processes.settings.redis_url)
    try:
        bob = await ChatClient.connect(other_url)
        clients.append(bob)
        await bob.register("bob", "bob@example.org", PASSWORD)
        await bob.login("bob", PASSWORD)
        alice = await ChatClient.connect(first_url)
        clients.append(alice)
        await alice.register("alice", "alice@example.org", PASSWORD)
        await alice.login("alice", PASSWORD)
        assert alice.user is not None
        alice_id = alice.user["id"]
        await alice.open_dialog("bob")
        assert await peer_online(bob, alice_id) is True
        dead = set(await rds.smembers(keys.presence(alice_id)))
        assert len(dead) == 1

        processes.kill("gateway-1")
        # Announced offline within 4/3 of the ttl (docs/PROTOCOL.md), with room for a slow machine.
        await pushes_until(bob, presence_of(alice_id, False), timeout=TTL_SECONDS * 4 / 3 + 15)
        assert await peer_online(bob, alice_id) is False

        # The same name again: a new gateway id, none of the dead one's users.
        processes.start_gateway("gateway-1")
        assert await rds.smembers(keys.presence(alice_id)) == set()
        assert not dead & set(await rds.smembers(keys.GATEWAYS))
        assert await peer_online(bob, alice_id) is False

        again = await ChatClient.connect(processes.url("gateway-1"))
        clients.append(again)
        await again.login("alice", PASSWORD)
        await pushes_until(bob, presence_of(alice_id, True))
        now = set(await rds.smembers(keys.presence(alice_id)))
        assert len(now) == 1 and not now & dead
    finally:
        for client in clients:
            await client.close()
        await rds.aclose()
