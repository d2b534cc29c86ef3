"""`sync`: a client that comes back gets what it missed, then live messages, with no gap and
no duplicate between the two."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat_client import ServerError
from tests.support.polling import wait_until
from tests.support.stack import Stack, cancel_and_wait
from tests.support.users import PASSWORD, new_user

# docs/PROTOCOL.md: "A reply is capped (500 messages or about 256 KiB of text)".
SYNC_PAGE_MESSAGES = 500


async def test_sync_returns_missed_messages_then_live(stack: Stack) -> None:
    alice = await new_user(stack, "alice", 0)
    bob = await new_user(stack, "bob", 1)
    dialog = await alice.open_dialog("bob")
    await bob.close()
    sent = [await alice.send(dialog["id"], f"m{n}") for n in range(5)]

    bob = await stack.client(0)
    await bob.login("bob", PASSWORD)
    reply = await bob.call({"type": "sync", "dialogs": {dialog["id"]: 2}})
    assert reply["type"] == "synced"
    assert reply["messages"] == sent[2:]
    assert reply["dialogs"] == {dialog["id"]: 5}
    assert reply.get("more", False) is False

    # Asked again on the same connection, nothing is sent twice.
    again = await bob.call({"type": "sync"})
    assert again["messages"] == [] and again["dialogs"] == {dialog["id"]: 5}
    # A new connection that knows nothing gets every dialog from the start.
    fresh = await stack.client(1)
    await fresh.login("bob", PASSWORD)
    everything = await fresh.call({"type": "sync"})
    assert everything["messages"] == sent
    assert everything["dialogs"] == {dialog["id"]: 5}

    live = await alice.send(dialog["id"], "live")
    assert (await bob.next_push())["message"] == live


async def test_sync_of_a_dialog_not_yours_is_refused(stack: Stack) -> None:
    alice = await new_user(stack, "alice")
    await new_user(stack, "bob")
    await new_user(stack, "carol")
    carol = await stack.client(1)
    await carol.login("carol", PASSWORD)
    dialog = await alice.open_dialog("bob")
    try:
        await carol.call({"type": "sync", "dialogs": {dialog["id"]: 0}})
    except ServerError as exc:
        assert exc.code == "not_member"
    else:
        raise AssertionError("carol synced alice and bob's dialog")
    reply = await carol.request({"type": "sync", "dialogs": {"7": 0}})
    assert reply["code"] == "invalid" and "dialog_id" in reply["message"]


@pytest.mark.slow
async def test_sync_during_a_stream_of_messages_has_no_gap_or_duplicate(stack: Stack) -> None:
    alice = await new_user(stack, "alice", 0)
    await new_user(stack, "bob", 1)
    dialog = await alice.open_dialog("bob")
    missed, after = 20, 20
    sent: list[int] = []
    logged_in, synced_back = asyncio.Event(), asyncio.Event()

    async def sender() -> None:
        # `missed` messages before bob's new connection exists (only his sync can bring them),
        # then a stream through his sync and on, until `after` more went once its reply was in.
        while len(sent) < missed:
            sent.append((await alice.send(dialog["id"], f"m{len(sent)}"))["seq"])
        await logged_in.wait()
        since_reply = 0
        while since_reply < after:
            replied = synced_back.is_set()
            sent.append((await alice.send(dialog["id"], f"m{len(sent)}"))["seq"])
            since_reply += replied

    sending = asyncio.create_task(sender(), name="alice's sends")
    try:
        await wait_until(lambda: len(sent) >= missed, tasks=[sending], what=f"alice's first {missed} messages")
        bob = await stack.client(1)
        await bob.login("bob", PASSWORD)
        logged_in.set()
        synced = await bob.call({"type": "sync", "dialogs": {dialog["id"]: 0}})
        synced_back.set()
        await sending
    finally:
        await cancel_and_wait(sending)
    total = len(sent)
    assert sent == list(range(1, total + 1))

    from_sync: list[int] = [m["seq"] for m in synced["messages"]]
    live: list[int] = []
    while len(from_sync) + len(live) < total:
        try:
            push: dict[str, Any] = await bob.next_push()
        except TimeoutError:
            raise AssertionError(
                f"stuck: synced {from_sync[:3]}..{from_sync[-3:]} up to {synced['dialogs']}, "
                f"live {live[:5]}..{live[-5:]} ({len(live)})"
            ) from None
        assert push["type"] == "message", push
        live.append(push["message"]["seq"])
    # Live messages that reached bob before his sync are left out of `synced`; those that came
    # while it was in flight were held and released after it: each seq exactly once.
    assert sorted(from_sync + live) == list(range(1, total + 1))
    assert from_sync == sorted(from_sync) and live == sorted(live)
    # Both paths carried messages: the sync those sent before bob connected, the live path
    # those sent after the sync's reply.
    assert from_sync[:missed] == list(range(1, missed + 1)), from_sync
    assert live[-after:] == sent[-after:], live
    assert synced["dialogs"][dialog["id"]] >= max(from_sync)
    # Nothing more is on its way: the next push is a message sent now, not a late copy.
    fence = await alice.send(dialog["id"], "fence")
    assert await bob.next_push() == {"type": "message", "message": fence}


@pytest.mark.slow
async def test_sync_pages_with_more(stack: Stack) -> None:
    alice = await new_user(stack, "alice")
    await new_user(stack, "bob")
    dialog = await alice.open_dialog("bob")
    for n in range(SYNC_PAGE_MESSAGES + 20):
        await alice.send(dialog["id"], f"m{n}")
    # Logged in only now, so nothing reached this connection live.
    bob = await stack.client(1)
    await bob.login("bob", PASSWORD)
    first = await bob.call({"type": "sync", "dialogs": {dialog["id"]: 0}})
    assert first["more"] is True
    assert [m["seq"] for m in first["messages"]] == list(range(1, SYNC_PAGE_MESSAGES + 1))
    position = first["dialogs"][dialog["id"]]
    assert position == SYNC_PAGE_MESSAGES
    second = await bob.call({"type": "sync", "dialogs": first["dialogs"]})
    assert [m["seq"] for m in second["messages"]] == list(range(position + 1, position + 21))
    assert second.get("more", False) is False
