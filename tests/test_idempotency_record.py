"""What a send's idempotency record keeps (issue 14, Redis memory per message): only the
message's seq and id, for CHAT_CLIENT_MSG_ID_TTL_SECONDS (minutes). A resend within that window
still gets the very same message, both while it waits in the pending set and after it was
stored and left it (then chat_service rebuilds the `sent` reply from the table)."""

from __future__ import annotations

import json

import redis.asyncio

from chat_client import ChatClient
from chat_client.client import Frame
from chatkit.settings import Settings
from storage_worker.service import serve as serve_storage
from tests.support import layout
from tests.support.polling import wait_for_value
from tests.support.stack import Stack
from tests.support.users import device, new_user, uid


async def send(client: ChatClient, dialog_id: str, text: str, client_msg_id: str) -> Frame:
    reply = await client.call({"type": "send", "dialog_id": dialog_id, "text": text, "client_msg_id": client_msg_id})
    assert reply["type"] == "sent" and reply["client_msg_id"] == client_msg_id, reply
    message: Frame = reply["message"]
    return message


def test_the_default_window_is_minutes_not_a_day() -> None:
    assert 60 <= Settings().client_msg_id_ttl_seconds <= 3600


async def test_a_resend_gets_the_same_message_pending_and_stored(stack: Stack, rds: redis.asyncio.Redis) -> None:
    await stack.stop_service("storage_worker")
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    text = "a text the record must not hold " * 8
    first = await send(alice, dialog_id, text, "retry-me")
    assert await bob.next_push() == {"type": "message", "message": first}

    # The record holds the seq and the id, nothing of the text, and expires within the window.
    record = layout.record(dialog_id, uid(alice), "retry-me")
    assert await rds.get(record) == f"{first['seq']}:{first['id']}".encode()
    ttl = await rds.ttl(record)
    assert 0 < ttl <= stack.settings.client_msg_id_ttl_seconds, ttl

    # Not stored yet: the script answers from the pending set.
    assert await rds.zcard(layout.pending(dialog_id)) == 1
    assert await send(alice, dialog_id, "whatever", "retry-me") == first

    # Stored, and gone from the pending set: chat_service answers from the table.
    stack.start_service("storage_worker", serve_storage)
    await wait_for_value(lambda: rds.zcard(layout.pending(dialog_id)), lambda n: n == 0, "the message to be stored")
    assert await send(alice, dialog_id, "whatever", "retry-me") == first
    # On another connection of the sender too, through the other gateway.
    again = await device(stack, "alice", gateway=1)
    assert await send(again, dialog_id, "whatever", "retry-me") == first

    # Nobody heard a repeat, and there is one message.
    later = await alice.send(dialog_id, "later")
    assert later["seq"] == first["seq"] + 1
    assert await bob.next_push() == {"type": "message", "message": later}
    assert [m["id"] for m in await bob.history(dialog_id)] == [first["id"], later["id"]]


async def test_a_record_in_the_old_form_still_answers(stack: Stack, rds: redis.asyncio.Redis) -> None:
    """A record written before records were slimmed (the whole message) during a rolling upgrade."""
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    first = await send(alice, dialog_id, "once", "old-form")
    record = layout.record(dialog_id, uid(alice), "old-form")
    whole = await alice.history(dialog_id)
    assert whole == [first]
    await rds.set(record, json.dumps(first, separators=(",", ":")), ex=60)
    assert await send(alice, dialog_id, "whatever", "old-form") == first
