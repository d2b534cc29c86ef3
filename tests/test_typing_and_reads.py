"""Typing (at most once, rate limited, never stored) and read marks (durable, forward only,
never past the end) between users on two gateways, and a peer's rename reaching an open
connection."""

from __future__ import annotations

import asyncpg
import redis.asyncio

from chat_client import ChatClient
from chat_client.client import Frame
from chat_service.service import serve as serve_chat
from chatkit import keys
from chatkit.partitions import Partitions
from tests.support.live_events import of_type, pushes_until, until
from tests.support.protocol import expect_error
from tests.support.stack import Stack
from tests.support.users import device, new_user, uid


def _chat_streams(stack: Stack) -> list[str]:
    return [keys.chat_requests(tag) for tag in Partitions(stack.settings.partitions).tags()]


async def _requests(rds: redis.asyncio.Redis, streams: list[str]) -> int:
    return sum([await rds.xlen(stream) for stream in streams])


async def _requests_done(rds: redis.asyncio.Redis, streams: list[str], at_least: int) -> bool:
    """The chat streams hold ``at_least`` entries and every one was handled (read, acknowledged)."""
    if await _requests(rds, streams) < at_least:
        return False
    for stream in streams:
        if await rds.exists(stream):
            groups = await rds.xinfo_groups(stream)
            if any(group["pending"] or group.get("lag") for group in groups):
                return False
    return True


async def test_typing_reaches_the_peer_and_other_devices_rate_limited(
    stack: Stack, rds: redis.asyncio.Redis,
) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    laptop = await device(stack, "alice", gateway=1)
    dialog = await alice.open_dialog("bob")

    await alice.typing(dialog["id"])
    expected = {"type": "typing", "dialog_id": dialog["id"], "user_id": uid(alice)}
    assert (await pushes_until(bob, of_type("typing")))[-1] == expected
    assert (await pushes_until(laptop, of_type("typing")))[-1] == expected

    # A burst, once the gate has opened again: some go through, not all; none comes back to
    # the typing connection.
    gate = keys.typing_gate(dialog["id"], uid(alice))
    await until(lambda: _gone(rds, gate), "the typing gate open")
    streams = _chat_streams(stack)
    before = await _requests(rds, streams)
    burst = 30
    for _ in range(burst):
        await alice.typing(dialog["id"])
    await until(lambda: _requests_done(rds, streams, before + burst), "every typing frame handled")
    marker = await alice.send(dialog["id"], "marker")
    seen = await pushes_until(bob, lambda f: f.get("type") == "message" and f["message"]["id"] == marker["id"])
    forwarded = [f for f in seen if f["type"] == "typing"]
    assert 1 <= len(forwarded) < burst, forwarded
    assert all(f == expected for f in forwarded)
    assert [f for f in await _drain(alice) if f["type"] == "typing"] == []
    # Never stored: nothing but the marker is in the dialog.
    assert [m["text"] for m in await bob.history(dialog["id"])] == ["marker"]


async def test_typing_in_a_dialog_that_is_not_yours(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    carol = await new_user(stack, "carol", gateway=1)
    theirs = await bob.open_dialog("carol")
    await expect_error(alice, {"type": "typing", "dialog_id": theirs["id"]}, "not_member")
    # A dialog id with alice in it, but no such dialog.
    lo, hi = sorted((uid(alice), uid(carol)))
    await expect_error(alice, {"type": "typing", "dialog_id": f"{lo}_{hi}"}, "not_member")
    await expect_error(alice, {"type": "typing", "dialog_id": "nonsense"}, "invalid")


async def test_read_marks_forward_only_never_past_the_end_pushed_and_durable(
    stack: Stack, db: asyncpg.Connection,
) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    phone = await device(stack, "alice", gateway=1)
    bob = await new_user(stack, "bob", gateway=1)
    dialog = await alice.open_dialog("bob")
    did, a, b = dialog["id"], str(uid(alice)), str(uid(bob))
    for n in range(3):
        await bob.send(did, f"m{n}")

    async def alice_view() -> tuple[int, dict[str, int]]:
        [summary] = await alice.dialogs()
        return summary["unread"], summary["reads"]

    assert await alice_view() == (3, {a: 0, b: 0})
    reply = await alice.call({"type": "read", "dialog_id": did, "seq": 2})
    assert reply == {"type": "read", "ref": reply["ref"], "dialog_id": did, "user_id": uid(alice), "seq": 2}
    pushed = {"type": "read", "dialog_id": did, "user_id": uid(alice), "seq": 2}
    assert (await pushes_until(bob, of_type("read")))[-1] == pushed
    assert (await pushes_until(phone, of_type("read")))[-1] == pushed
    assert await alice_view() == (1, {a: 2, b: 0})

    # Backwards: accepted, the mark stays, nobody is told.
    lower = await alice.read(did, 1)
    assert lower["seq"] == 2
    # Past the end: refused.
    error = await expect_error(alice, {"type": "read", "dialog_id": did, "seq": 4}, "invalid")
    assert "3" in error["message"]
    await expect_error(bob, {"type": "read", "dialog_id": "1_999", "seq": 0}, "not_member")
    assert (await alice.read(did, 3))["seq"] == 3
    # The next read event bob sees is seq 3: the lower one moved nothing and said nothing.
    assert [f["seq"] for f in await pushes_until(bob, of_type("read")) if f["type"] == "read"] == [3]
    assert await alice_view() == (0, {a: 3, b: 0})

    # Unread follows sends at once (before storage), and never counts one's own messages.
    await bob.send(did, "m3")
    await alice.send(did, "reply")
    assert await alice_view() == (1, {a: 3, b: 0})
    [bob_view] = await bob.dialogs()
    assert (bob_view["unread"], bob_view["last_message"]["text"]) == (1, "reply")

    # sync carries both members' marks for the dialogs it covers.
    synced = await phone.call({"type": "sync"})
    assert synced["reads"] == {did: {a: 3, b: 0}}

    # Stored in PostgreSQL: a restarted chat_service still knows them.
    assert await db.fetchval("SELECT lo_read + hi_read FROM dialogs") == 3
    for name in [n for n in stack.tasks if n.startswith("chat_service")]:
        await stack.stop_service(name)
    stack.start_service("chat_service-again", serve_chat)
    assert await alice_view() == (1, {a: 3, b: 0})


async def test_a_peer_rename_reaches_open_connections(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    bob_laptop = await device(stack, "bob", gateway=0)
    await alice.open_dialog("bob")
    await alice.call({"type": "rename", "username": "alicia"})
    event = {"type": "user", "user": {"id": uid(alice), "username": "alicia"}}
    assert (await pushes_until(bob, of_type("user")))[-1] == event
    assert (await pushes_until(bob_laptop, of_type("user")))[-1] == event
    [summary] = await bob.dialogs()
    assert summary["peer"]["username"] == "alicia"


async def _gone(rds: redis.asyncio.Redis, key: str) -> bool:
    return not await rds.exists(key)


async def _drain(client: ChatClient) -> list[Frame]:
    out = []
    while client.pending_pushes():
        out.append(await client.next_push())
    return out
