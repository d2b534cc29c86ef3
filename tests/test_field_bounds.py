"""docs/PROTOCOL.md's field rules at their edges, through real gateways: the longest value the
doc allows is accepted and one character more is refused with `invalid` and a message naming
the field. The bounds are read from the doc (tests/support/protocol_doc.py), not from chatkit/wire.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatkit.settings import Settings
from tests.support.protocol import assert_alive, cmid, expect_error
from tests.support.protocol_doc import bounds
from tests.support.stack import Stack, start_stack
from tests.support.users import PASSWORD, new_user

LIMITS = bounds()
# A CHAT_MAX_TEXT_LENGTH above the default, so that a server keeping the default (or the
# gateway's own frame-level cap) would refuse what this one must accept.
MAX_TEXT = LIMITS.text_max_default + 904


def username_of(length: int) -> str:
    return ("u_.-" + "n" * length)[:length]


def email_of(length: int) -> str:
    domain = "@example.org"
    return "e" * (length - len(domain)) + domain


def register(username: str, email: str, password: str) -> dict[str, object]:
    return {"type": "register", "username": username, "email": email, "password": password}


async def test_username_at_the_bound_registers_logs_in_and_renames(stack: Stack) -> None:
    longest, too_long = username_of(LIMITS.username_max), username_of(LIMITS.username_max + 1)
    client = await stack.client(0)
    reply = await expect_error(client, register(too_long, "x@example.org", PASSWORD), "invalid")
    assert "username" in reply["message"], reply

    user = await client.register(longest, "x@example.org", PASSWORD)
    assert user["username"] == longest
    other = await stack.client(1)
    await other.login(longest, PASSWORD)
    assert other.user == {"id": user["id"], "username": longest}

    # rename has the same rule: another name at the bound is taken, one more refused.
    renamed = "r" * LIMITS.username_max
    reply = await expect_error(other, {"type": "rename", "username": renamed + "r"}, "invalid")
    assert "username" in reply["message"], reply
    assert (await other.call({"type": "rename", "username": renamed}))["user"]["username"] == renamed


async def test_email_at_the_bound_registers_and_one_more_is_invalid(stack: Stack) -> None:
    client = await stack.client(0)
    reply = await expect_error(client, register("bob", email_of(LIMITS.email_max + 1), PASSWORD), "invalid")
    assert "email" in reply["message"], reply
    user = await client.register("bob", email_of(LIMITS.email_max), PASSWORD)
    assert user["email"] == email_of(LIMITS.email_max)
    # The refused attempt left nothing behind: the name it tried was still free.
    await client.login("bob", PASSWORD)


async def test_password_at_the_bound_registers_and_logs_in(stack: Stack) -> None:
    longest = ("p4ss w0rd " * 100)[: LIMITS.password_max]
    client = await stack.client(0)
    reply = await expect_error(client, register("carol", "carol@example.org", longest + "x"), "invalid")
    assert "password" in reply["message"], reply
    await client.register("carol", "carol@example.org", longest)
    # Every character counts: the same password one character short is wrong.
    await expect_error(client, {"type": "login", "username": "carol", "password": longest[:-1]}, "bad_credentials")
    reply = await expect_error(
        client, {"type": "login", "username": "carol", "password": longest + "x"}, "invalid"
    )
    assert "password" in reply["message"], reply
    await client.login("carol", longest)
    await assert_alive(client)


async def test_client_msg_id_at_the_bound_is_echoed_and_one_more_is_invalid(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    longest = "c" * LIMITS.client_msg_id_max
    send = {"type": "send", "dialog_id": dialog_id, "text": "hi"}
    reply = await expect_error(alice, {**send, "client_msg_id": longest + "c"}, "invalid")
    assert "client_msg_id" in reply["message"], reply
    sent = await alice.call({**send, "client_msg_id": longest})
    assert sent["client_msg_id"] == longest and sent["message"]["seq"] == 1
    # The refused send made no message: the accepted one is the first and only one.
    assert await bob.next_push() == {"type": "message", "message": sent["message"]}
    assert [m["id"] for m in await bob.history(dialog_id)] == [sent["message"]["id"]]


@pytest.fixture
async def long_text_stack(settings: Settings) -> AsyncIterator[Stack]:
    running = await start_stack(settings.with_overrides(max_text_length=MAX_TEXT))
    try:
        yield running
    finally:
        await running.stop()


async def test_a_configured_max_text_length_is_the_bound(long_text_stack: Stack) -> None:
    stack = long_text_stack
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    send = {"type": "send", "dialog_id": dialog_id, "client_msg_id": cmid()}
    reply = await expect_error(alice, {**send, "text": "x" * (MAX_TEXT + 1)}, "invalid")
    assert "text" in reply["message"] and str(MAX_TEXT) in reply["message"], reply

    # At the bound, and at the bound once white space at both ends is trimmed.
    longest = await alice.send(dialog_id, "y" * MAX_TEXT)
    assert longest["text"] == "y" * MAX_TEXT and longest["seq"] == 1
    padded = await alice.send(dialog_id, " \n" + "z" * MAX_TEXT + "\t ")
    assert padded["text"] == "z" * MAX_TEXT and padded["seq"] == 2
    assert [m["text"] for m in await bob.history(dialog_id)] == ["y" * MAX_TEXT, "z" * MAX_TEXT]
