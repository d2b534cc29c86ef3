"""The `dialogs` list: ordered by activity, newest first, paged with a cursor; each dialog's
last message and unread count right after a send (before the storage worker stored it) and
after it was stored."""

from __future__ import annotations

import asyncpg

from chat_client import ChatClient
from tests.support.db import wait_rows
from tests.support.live_events import until
from tests.support.protocol import expect_error
from tests.support.stack import Stack
from tests.support.users import new_user


async def _peers(client: ChatClient) -> list[str]:
    return [d["peer"]["username"] for d in await client.dialogs()]


async def test_order_follows_new_messages_and_pages(stack: Stack, db: asyncpg.Connection) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    others = {name: await new_user(stack, name, gateway=n % 2) for n, name in enumerate(("bob", "carol", "dave"))}
    dialogs = {name: (await alice.open_dialog(name))["id"] for name in others}
    # No messages yet: newest dialog first.
    assert await _peers(alice) == ["dave", "carol", "bob"]

    async def order_is(expected: list[str]) -> bool:
        return await _peers(alice) == expected

    sent = await others["bob"].send(dialogs["bob"], "bob here")
    # Right after the send, before storage: the last message and the unread count are there.
    by_peer = {d["peer"]["username"]: d for d in await alice.dialogs()}
    assert by_peer["bob"]["last_message"] == sent
    assert by_peer["bob"]["unread"] == 1
    assert by_peer["carol"]["last_message"] is None and by_peer["carol"]["unread"] == 0
    await until(lambda: order_is(["bob", "dave", "carol"]), "bob's dialog first")
    # Stored now: the same last message, read from the table.
    await wait_rows(db, dialogs["bob"], 1)
    by_peer = {d["peer"]["username"]: d for d in await alice.dialogs()}
    assert by_peer["bob"]["last_message"] == sent and by_peer["bob"]["unread"] == 1

    await alice.send(dialogs["carol"], "hi carol")
    await others["carol"].send(dialogs["carol"], "hi alice")
    await until(lambda: order_is(["carol", "bob", "dave"]), "carol's dialog first")
    [carol_view] = await others["carol"].dialogs()
    assert carol_view["unread"] == 1 and carol_view["last_message"]["text"] == "hi alice"

    # Pages of two: the same order, and no cursor after the last page.
    first = await alice.dialog_page(limit=2)
    assert [d["peer"]["username"] for d in first["dialogs"]] == ["carol", "bob"]
    rest = await alice.dialog_page(limit=2, cursor=first["next_cursor"])
    assert [d["peer"]["username"] for d in rest["dialogs"]] == ["dave"]
    assert "next_cursor" not in rest
    everything = await alice.dialog_page(limit=3)
    assert "next_cursor" not in everything and len(everything["dialogs"]) == 3
    await expect_error(alice, {"type": "dialogs", "cursor": "not a cursor"}, "invalid")
    await expect_error(alice, {"type": "dialogs", "limit": 0}, "invalid")
