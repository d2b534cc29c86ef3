"""Presence across two gateways and several devices: each peer hears of a user once when the
first device logs in and once when the last leaves; `dialogs` shows the same."""

from __future__ import annotations

from collections.abc import Awaitable

import redis.asyncio

from chat_client import ChatClient
from chatkit import keys
from tests.support.live_events import peer_online, presence_of, pushes_until, until
from tests.support.stack import Stack
from tests.support.users import device, new_user, uid


async def test_online_once_offline_after_the_last_device_and_online_again(
    stack: Stack, rds: redis.asyncio.Redis,
) -> None:
    bob = await new_user(stack, "bob", gateway=1)
    alice = await new_user(stack, "alice", gateway=0)
    carol = await new_user(stack, "carol", gateway=1)
    alice_id, carol_id = uid(alice), uid(carol)
    await bob.open_dialog("alice")
    await bob.open_dialog("carol")
    await alice.close()
    await carol.close()
    await until(lambda: _offline(bob, alice_id, carol_id), "alice and carol offline in bob's dialogs")
    # Both departures reach bob before anything this test checks.
    seen = await pushes_until(bob, presence_of(alice_id, False))
    if not any(presence_of(carol_id, False)(f) for f in seen):
        await pushes_until(bob, presence_of(carol_id, False))

    async def gateways_of(user_id: int) -> set[bytes | str]:
        return set(await rds.smembers(keys.presence(user_id)))

    # The first device: bob is told once.
    phone = await device(stack, "alice", gateway=0)
    seen = await pushes_until(bob, presence_of(alice_id, True))
    assert [f for f in seen if f["type"] == "presence"] == [{"type": "presence", "user_id": alice_id, "online": True}]
    assert await peer_online(bob, alice_id) is True

    # A second device on the other gateway: nothing for bob. Carol logging in on that gateway
    # afterwards is the marker: her change goes through the same queue and stream after it.
    laptop = await device(stack, "alice", gateway=1)
    await until(lambda: _count(gateways_of(alice_id), 2), "alice present on both gateways")
    carol = await device(stack, "carol", gateway=1)
    seen = await pushes_until(bob, presence_of(carol_id, True))
    assert [f for f in seen if f.get("user_id") == alice_id] == []

    # The first device leaves: alice is still online, bob hears nothing.
    await phone.close()
    await until(lambda: _count(gateways_of(alice_id), 1), "alice present on one gateway")
    await carol.close()
    seen = await pushes_until(bob, presence_of(carol_id, False))
    assert [f for f in seen if f.get("user_id") == alice_id] == []
    assert await peer_online(bob, alice_id) is True

    # The last device leaves: offline, once.
    await laptop.close()
    seen = await pushes_until(bob, presence_of(alice_id, False))
    assert [f for f in seen if f.get("user_id") == alice_id] == [
        {"type": "presence", "user_id": alice_id, "online": False}
    ]
    assert await peer_online(bob, alice_id) is False

    # And back.
    await device(stack, "alice", gateway=1)
    await pushes_until(bob, presence_of(alice_id, True))
    assert await peer_online(bob, alice_id) is True


async def test_only_dialog_peers_hear_and_a_user_hears_nothing_of_themself(stack: Stack) -> None:
    bob = await new_user(stack, "bob", gateway=0)
    stranger = await new_user(stack, "stranger", gateway=1)
    alice = await new_user(stack, "alice", gateway=1)
    await alice.open_dialog("bob")
    await alice.close()
    await pushes_until(bob, presence_of(uid(alice), False))
    # The stranger, who has no dialog with alice, is told nothing; a marker from a peer of
    # theirs shows the fan-out has passed alice's change.
    await stranger.open_dialog("bob")
    await bob.close()
    seen = await pushes_until(stranger, presence_of(uid(bob), False))
    assert [f for f in seen if f["type"] == "presence"] == [
        {"type": "presence", "user_id": uid(bob), "online": False}
    ]


async def _offline(client: ChatClient, *user_ids: int) -> bool:
    return [await peer_online(client, u) for u in user_ids] == [False] * len(user_ids)


async def _count(members: Awaitable[set[bytes | str]], n: int) -> bool:
    return len(await members) == n
