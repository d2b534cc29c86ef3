"""The vertical slice end to end: two gateways, users on different ones, messages both ways,
delivered live and stored in the dialog's own table."""

from __future__ import annotations

import asyncpg

from tests.support.db import wait_rows
from tests.support.stack import Stack
from tests.support.users import new_user


async def test_alice_and_bob_on_two_gateways(stack: Stack, db: asyncpg.Connection) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    assert alice.user is not None and bob.user is not None
    dialog = await alice.open_dialog("bob")
    assert dialog["created"] is True
    assert dialog["peer"] == {"id": bob.user["id"], "username": "bob"}

    sent = await alice.send(dialog["id"], "hi bob")
    assert sent["seq"] == 1 and sent["sender"] == alice.user and sent["text"] == "hi bob"
    pushed = await bob.next_push()
    assert pushed == {"type": "message", "message": sent}

    reply = await bob.send(dialog["id"], "  hi alice  ")
    assert reply["seq"] == 2 and reply["text"] == "hi alice"
    assert (await alice.next_push())["message"] == reply

    rows = await wait_rows(db, dialog["id"], 2)
    assert [(r["seq"], r["sender_id"], r["text"]) for r in rows] == [
        (1, alice.user["id"], "hi bob"),
        (2, bob.user["id"], "hi alice"),
    ]
    history = await bob.history(dialog["id"])
    assert [m["seq"] for m in history] == [1, 2]
    assert history == [sent, reply]
