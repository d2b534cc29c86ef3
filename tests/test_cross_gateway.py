"""The vertical slice end to end: two gateways, users on different ones, messages both ways,
delivered live and stored in the dialog's own table."""

from __future__ import annotations

import asyncio

import asyncpg

from chat_client import ChatClient
from tests.harness import Stack

PASSWORD = "correct horse battery"


async def make_user(stack: Stack, name: str, gateway: int = 0) -> ChatClient:
    client = await stack.client(gateway)
    await client.register(name, f"{name}@example.org", PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def wait_rows(db: asyncpg.Connection, table: str, n: int) -> list[asyncpg.Record]:
    for _ in range(500):
        exists = await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{table}"')
        if exists:
            rows = await db.fetch(f'SELECT seq, sender_id, text FROM "{table}" ORDER BY seq')
            if len(rows) >= n:
                return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"{table} never reached {n} rows")


async def test_alice_and_bob_on_two_gateways(stack: Stack, db: asyncpg.Connection) -> None:
    alice = await make_user(stack, "alice", gateway=0)
    bob = await make_user(stack, "bob", gateway=1)
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

    lo, hi = sorted((alice.user["id"], bob.user["id"]))
    rows = await wait_rows(db, f"chat_{lo}_{hi}", 2)
    assert [(r["seq"], r["sender_id"], r["text"]) for r in rows] == [
        (1, alice.user["id"], "hi bob"),
        (2, bob.user["id"], "hi alice"),
    ]
    history = await bob.history(dialog["id"])
    assert [m["seq"] for m in history] == [1, 2]
    assert history == [sent, reply]
