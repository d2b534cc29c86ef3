"""The `resync` frame (docs/PROTOCOL.md, "Pushed by the server"): when a gateway's pub/sub
link to the real Valkey is killed (`CLIENT KILL TYPE pubsub`), every logged-in connection of
every gateway gets `{"type": "resync", "reason"}`, with no `ref`, and live delivery and `sync`
work again after it."""

from __future__ import annotations

import redis.asyncio

from chat_client import ChatClient
from tests.support.stack import Stack
from tests.support.users import device, new_user


async def expect_resync(client: ChatClient) -> None:
    frame = await client.next_push(timeout=20)
    assert frame["type"] == "resync", frame
    assert set(frame) == {"type", "reason"}, frame
    assert isinstance(frame["reason"], str) and frame["reason"], frame


async def test_a_dropped_subscription_sends_resync_then_delivery_resumes(
    stack: Stack, rds: redis.asyncio.Redis
) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    bob_phone = await device(stack, "bob", gateway=0)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    before = await alice.send(dialog_id, "before the drop")
    for client in (bob, bob_phone):
        assert await client.next_push() == {"type": "message", "message": before}

    killed = await rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
    assert int(killed) >= len(stack.gateway_urls), f"expected each gateway's link killed, killed {killed}"
    for client in (alice, bob, bob_phone):
        await expect_resync(client)

    # What a client does on resync: sync. Nothing was missed; the reply says where bob stands.
    synced = await bob.call({"type": "sync", "dialogs": {dialog_id: 0}})
    assert synced["dialogs"] == {dialog_id: before["seq"]}
    assert synced["messages"] == []  # bob already had it live, on this connection
    # The gateways are subscribed again: live messages reach every connection of both users.
    after = await alice.send(dialog_id, "after the drop")
    for client in (bob, bob_phone):
        assert await client.next_push() == {"type": "message", "message": after}
    reply = await bob.call({"type": "send", "dialog_id": dialog_id, "text": "back", "client_msg_id": "b1"})
    assert await alice.next_push() == {"type": "message", "message": reply["message"]}
    assert await bob_phone.next_push() == {"type": "message", "message": reply["message"]}
