"""The reach of a send's idempotency record (docs/PROTOCOL.md, "Sending"): a `client_msg_id`
makes one message per dialog, not one across dialogs, and only for
CHAT_CLIENT_MSG_ID_TTL_SECONDS: a resend after that is a new message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from chat_client import ChatClient
from chat_client.client import Frame
from chatkit.settings import Settings
from tests.support import layout
from tests.support.polling import wait_for_value
from tests.support.stack import Stack, start_stack
from tests.support.users import new_user, uid

TTL_SECONDS = 1


async def send(client: ChatClient, dialog_id: str, text: str, client_msg_id: str) -> Frame:
    reply = await client.call({"type": "send", "dialog_id": dialog_id, "text": text, "client_msg_id": client_msg_id})
    assert reply["client_msg_id"] == client_msg_id, reply
    message: Frame = reply["message"]
    return message


async def test_the_same_client_msg_id_in_another_dialog_is_a_new_message(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    carol = await new_user(stack, "carol", gateway=1)
    with_bob = (await alice.open_dialog("bob"))["id"]
    with_carol = (await alice.open_dialog("carol"))["id"]

    to_bob = await send(alice, with_bob, "hi bob", "same")
    to_carol = await send(alice, with_carol, "hi carol", "same")
    assert to_carol["dialog_id"] == with_carol and to_carol["text"] == "hi carol"
    assert to_carol["id"] != to_bob["id"] and to_carol["seq"] == 1
    assert await bob.next_push() == {"type": "message", "message": to_bob}
    assert await carol.next_push() == {"type": "message", "message": to_carol}

    # Within each dialog the id still means that dialog's message, and nobody hears it again.
    assert await send(alice, with_bob, "again", "same") == to_bob
    assert await send(alice, with_carol, "again", "same") == to_carol
    later = await alice.send(with_bob, "later")
    assert later["seq"] == 2
    assert await bob.next_push() == {"type": "message", "message": later}
    assert [m["id"] for m in await bob.history(with_bob)] == [to_bob["id"], later["id"]]
    assert [m["id"] for m in await carol.history(with_carol)] == [to_carol["id"]]


@pytest.fixture
async def short_ttl(settings: Settings) -> AsyncIterator[Stack]:
    running = await start_stack(settings.with_overrides(client_msg_id_ttl_seconds=TTL_SECONDS))
    try:
        yield running
    finally:
        await running.stop()


async def test_a_resend_after_the_record_expired_is_a_new_message(
    short_ttl: Stack, rds: redis.asyncio.Redis
) -> None:
    stack = short_ttl
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    first = await send(alice, dialog_id, "once", "retry-me")
    assert await bob.next_push() == {"type": "message", "message": first}

    # The record is kept for the configured time, not the 24-hour default (on a slow machine
    # it may be gone already: -2, which the default could not give this soon either)...
    record = layout.record(dialog_id, uid(alice), "retry-me")
    ttl_ms = await rds.pttl(record)
    assert ttl_ms == -2 or 0 < ttl_ms <= TTL_SECONDS * 1000, f"expected expiry within {TTL_SECONDS} s, pttl {ttl_ms}"
    # ...and once it is gone, the same client_msg_id makes a new message, heard again.
    await wait_for_value(lambda: rds.exists(record), lambda n: n == 0, f"{record} to expire")
    second = await send(alice, dialog_id, "once", "retry-me")
    assert second["seq"] == 2 and second["id"] != first["id"]
    assert await bob.next_push() == {"type": "message", "message": second}
    assert [m["id"] for m in await bob.history(dialog_id)] == [first["id"], second["id"]]
