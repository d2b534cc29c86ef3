"""Wire protocol v1, dialogs: open_dialog and dialogs, through real gateways, including opens
from both sides at once, and what a rename does to dialogs and history."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support.db import wait_rows
from tests.support.dialogs import id_of, table_of
from tests.support.protocol import expect_error
from tests.support.stack import Stack
from tests.support.users import PASSWORD, device, new_user, uid


async def chats_of(db: asyncpg.Connection, user_id: int) -> list[int]:
    chats: list[int] = await db.fetchval("SELECT chats FROM users WHERE id = $1", user_id)
    return chats


async def test_open_dialog_reply_shape_and_second_open_from_either_side(
    stack: Stack, db: asyncpg.Connection,
) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    reply = await alice.request({"type": "open_dialog", "username": "bob"})
    expected_id = id_of(uid(alice), uid(bob))
    assert reply == {
        "type": "dialog", "ref": reply["ref"],
        "dialog": {"id": expected_id, "peer": {"id": uid(bob), "username": "bob"}, "created": True},
    }
    again = await alice.open_dialog("bob")
    assert again == {"id": expected_id, "peer": {"id": uid(bob), "username": "bob"}, "created": False}
    # Names are found regardless of case; the peer comes back as spelt at registration.
    other_side = await bob.open_dialog("ALICE")
    assert other_side == {"id": expected_id, "peer": {"id": uid(alice), "username": "alice"}, "created": False}
    assert await chats_of(db, uid(alice)) == [uid(bob)]
    assert await chats_of(db, uid(bob)) == [uid(alice)]
    assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{table_of(reply["dialog"]["id"])}"')


async def test_open_dialog_errors(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    await expect_error(alice, {"type": "open_dialog", "username": "nobody"}, "no_such_user")
    reply = await expect_error(alice, {"type": "open_dialog", "username": "alice"}, "invalid")
    assert "username" in reply["message"]
    await expect_error(alice, {"type": "open_dialog", "username": "Alice"}, "invalid")
    # PostgreSQL cannot take a NUL in a parameter: still an answer, not a request that hangs.
    reply = await expect_error(alice, {"type": "open_dialog", "username": "b\u0000b"}, "invalid")
    assert "username" in reply["message"]
    reply = await expect_error(alice, {"type": "open_dialog"}, "invalid")
    assert "username" in reply["message"]
    assert await alice.dialogs() == []


async def test_concurrent_opens_from_both_sides_make_one_dialog(stack: Stack, db: asyncpg.Connection) -> None:
    hub = await new_user(stack, "hub", gateway=0)
    names = [f"user{n}" for n in range(6)]
    others = [await new_user(stack, name, gateway=n % 2) for n, name in enumerate(names)]
    # The hub opens each dialog through a device of its own, on alternating gateways.
    hubs = [hub, *[await device(stack, "hub", gateway=n % 2) for n in range(5)]]
    for round_ in range(2):
        # Every pair at once, and both sides of each pair at once.
        opens = []
        for hub_conn, other, name in zip(hubs, others, names, strict=True):
            opens += [hub_conn.open_dialog(name), other.open_dialog("hub")]
        results = await asyncio.gather(*opens)
        for n, other in enumerate(others):
            from_hub, from_other = results[2 * n], results[2 * n + 1]
            assert from_hub["id"] == from_other["id"] == id_of(uid(hub), uid(other))
            assert from_hub["peer"] == other.user and from_other["peer"] == hub.user
            created = [from_hub["created"], from_other["created"]]
            assert created.count(True) == (1 if round_ == 0 else 0), (other.user, created)
            assert await chats_of(db, uid(other)) == [uid(hub)]
            count = await db.fetchval("SELECT count(*) FROM pg_class WHERE relname = $1", table_of(from_hub["id"]))
            assert count == 1
    hub_chats = await chats_of(db, uid(hub))
    assert sorted(hub_chats) == sorted(uid(other) for other in others)
    listed = await hub.dialogs()
    assert [d["peer"] for d in listed] == [{"id": uid(o), "username": o.user and o.user["username"]} for o in others]


async def test_dialogs_lists_every_peer(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    carol = await new_user(stack, "carol", gateway=0)
    empty = await alice.request({"type": "dialogs"})
    assert empty == {"type": "dialogs", "ref": empty["ref"], "dialogs": []}
    ab = await alice.open_dialog("bob")
    ac = await carol.open_dialog("alice")
    reply = await alice.request({"type": "dialogs"})
    assert reply == {
        "type": "dialogs", "ref": reply["ref"],
        "dialogs": [
            {"id": ab["id"], "peer": {"id": uid(bob), "username": "bob"}},
            {"id": ac["id"], "peer": {"id": uid(carol), "username": "carol"}},
        ],
    }
    assert await bob.dialogs() == [{"id": ab["id"], "peer": {"id": uid(alice), "username": "alice"}}]
    assert await carol.dialogs() == [{"id": ac["id"], "peer": {"id": uid(alice), "username": "alice"}}]


async def test_rename_keeps_dialogs_and_history(stack: Stack, db: asyncpg.Connection) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    phone = await device(stack, "alice", gateway=1)
    bob = await new_user(stack, "bob", gateway=1)
    dialog = await alice.open_dialog("bob")
    before = [await alice.send(dialog["id"], "hello"), await bob.send(dialog["id"], "hi alice")]
    assert before[0]["sender"] == {"id": uid(alice), "username": "alice"}
    # Once stored, messages are read with their sender's current name.
    await wait_rows(db, dialog["id"], 2)
    # Alice's other device got both messages pushed (her own and bob's), and nothing else.
    assert [(await phone.next_push())["message"] for _ in before] == before

    renamed = await alice.call({"type": "rename", "username": "alicia"})
    assert renamed["user"] == {"id": uid(alice), "username": "alicia"}
    assert await phone.next_push() == {"type": "renamed", "user": {"id": uid(alice), "username": "alicia"}}

    # Both devices now send as alicia, whatever gateway they are on.
    after = [await alice.send(dialog["id"], "new name"), await phone.send(dialog["id"], "from my phone")]
    for message in after:
        assert message["sender"] == {"id": uid(alice), "username": "alicia"}

    history = await bob.history(dialog["id"])
    assert [m["seq"] for m in history] == [1, 2, 3, 4]
    assert [m["sender"] for m in history] == [
        {"id": uid(alice), "username": "alicia"},
        {"id": uid(bob), "username": "bob"},
        {"id": uid(alice), "username": "alicia"},
        {"id": uid(alice), "username": "alicia"},
    ]
    assert [m["id"] for m in history[:2]] == [m["id"] for m in before]
    assert await bob.dialogs() == [{"id": dialog["id"], "peer": {"id": uid(alice), "username": "alicia"}}]
    assert await alice.dialogs() == [{"id": dialog["id"], "peer": {"id": uid(bob), "username": "bob"}}]
    reopened = await bob.open_dialog("alicia")
    assert reopened == {"id": dialog["id"], "peer": {"id": uid(alice), "username": "alicia"}, "created": False}
    await expect_error(bob, {"type": "open_dialog", "username": "alice"}, "no_such_user")

    again = await stack.client(0)
    await again.login("alicia", PASSWORD)
    assert [m["id"] for m in await again.history(dialog["id"])] == [m["id"] for m in history]
    # The old name is free again, for a different user.
    newcomer = await stack.client(0)
    await newcomer.register("alice", "another.alice@example.org", PASSWORD)
    await newcomer.login("alice", PASSWORD)
    assert uid(newcomer) != uid(alice)
    assert await newcomer.dialogs() == []
