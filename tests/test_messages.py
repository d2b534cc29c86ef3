"""Wire protocol v1, messages: send (fan-out to every other connection of both users, storage,
idempotent resend, validation) and history (paging, messages not yet stored), through real
gateways; and seqs without gap or repeat under concurrent sends to two chat_service replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio

from chat_client import ChatClient
from chat_client.client import Frame
from chatkit import keys
from chatkit.settings import Settings
from storage_worker.service import serve as serve_storage
from tests.support import dialogs, layout
from tests.support.db import assert_row_is, rows, wait_rows
from tests.support.protocol import assert_message, cmid, expect_error
from tests.support.stack import Stack, start_stack
from tests.support.users import device, new_user, uid


@pytest.fixture
async def two_replicas(settings: Settings) -> AsyncIterator[Stack]:
    """The usual stack, but with two chat_service replicas on the one request stream."""
    running = await start_stack(settings, chat_replicas=2)
    try:
        yield running
    finally:
        await running.stop()


async def server_ms(rds: redis.asyncio.Redis) -> int:
    seconds, micros = await rds.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def last_reads_ms(rds: redis.asyncio.Redis, stream: str) -> dict[str, int]:
    """When each chat_service replica last read requests off ``stream``, in the server's
    milliseconds (XINFO CONSUMERS' ``inactive``, -1 for never; read with TIME atomically)."""
    async with rds.pipeline(transaction=True) as pipe:
        pipe.time()
        pipe.xinfo_consumers(stream, keys.CHAT_GROUP)
        (seconds, micros), consumers = await pipe.execute()
    now = int(seconds) * 1000 + int(micros) // 1000
    return {
        c["name"].decode(): -1 if c["inactive"] < 0 else now - int(c["inactive"]) for c in consumers
    }


async def pair(stack: Stack) -> tuple[ChatClient, ChatClient, str]:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog = await alice.open_dialog("bob")
    return alice, bob, str(dialog["id"])


# --- send ----------------------------------------------------------------------------------


async def test_send_reply_fan_out_and_stored_row(stack: Stack, db: asyncpg.Connection) -> None:
    alice, bob, dialog_id = await pair(stack)
    alice_phone = await device(stack, "alice", gateway=1)
    bob_phone = await device(stack, "bob", gateway=0)
    assert alice.user is not None and bob.user is not None

    reply = await alice.request({"type": "send", "dialog_id": dialog_id, "text": "  hi bob\n", "client_msg_id": "c-1"})
    assert set(reply) == {"type", "ref", "client_msg_id", "message"}, reply
    assert reply["type"] == "sent" and reply["client_msg_id"] == "c-1"
    first: Frame = reply["message"]
    assert_message(first, dialog_id=dialog_id, sender=alice.user, text="hi bob", seq=1)
    # Every other connection of both users, on both gateways, gets it pushed.
    for other in (alice_phone, bob, bob_phone):
        assert await other.next_push() == {"type": "message", "message": first}

    second = await bob.send(dialog_id, "hi alice")
    assert_message(second, dialog_id=dialog_id, sender=bob.user, text="hi alice", seq=2)
    # Each user channel is delivered in seq order, so a connection whose next push is the
    # second message did not get the first: the sending connection never gets its own.
    assert await alice.next_push() == {"type": "message", "message": second}
    for other in (alice_phone, bob_phone):
        assert await other.next_push() == {"type": "message", "message": second}
    third = await alice_phone.send(dialog_id, "from alice's phone")
    assert await bob.next_push() == {"type": "message", "message": third}
    for other in (alice, bob_phone):
        assert await other.next_push() == {"type": "message", "message": third}
    assert third["sender"] == alice.user

    stored = await wait_rows(db, dialog_id, 3)
    assert len(stored) == 3
    for row, message in zip(stored, (first, second, third), strict=True):
        assert_row_is(row, message)


async def test_resend_with_the_same_client_msg_id_is_the_same_message(stack: Stack, db: asyncpg.Connection) -> None:
    alice, bob, dialog_id = await pair(stack)
    alice_phone = await device(stack, "alice", gateway=1)
    frame = {"type": "send", "dialog_id": dialog_id, "text": "only once", "client_msg_id": "same"}
    first = (await alice.call(frame))["message"]
    assert await bob.next_push() == {"type": "message", "message": first}
    assert await alice_phone.next_push() == {"type": "message", "message": first}

    again = await alice.call(frame)
    assert again["client_msg_id"] == "same" and again["message"] == first
    # From another device of the same user, and with other text, it is still that message.
    from_phone = await alice_phone.call({**frame, "text": "changed my mind"})
    assert from_phone["message"] == first

    # No second push: the next thing both see is a new message.
    later = await alice.send(dialog_id, "later")
    assert later["seq"] == 2
    assert await bob.next_push() == {"type": "message", "message": later}
    assert await alice_phone.next_push() == {"type": "message", "message": later}

    stored = await wait_rows(db, dialog_id, 2)
    assert [r["seq"] for r in stored] == [1, 2]
    assert_row_is(stored[0], first)
    # Once stored, a retry still answers the same message and adds nothing.
    assert (await alice.call(frame))["message"] == first
    assert [m["id"] for m in await bob.history(dialog_id)] == [first["id"], later["id"]]
    assert len(await rows(db, dialog_id)) == 2


async def test_send_text_bounds(stack: Stack) -> None:
    alice, _, dialog_id = await pair(stack)
    for text in ("", "   ", "\n\t \r\n"):
        reply = await expect_error(
            alice, {"type": "send", "dialog_id": dialog_id, "text": text, "client_msg_id": cmid()}, "invalid"
        )
        assert "text" in reply["message"]
    reply = await expect_error(
        alice, {"type": "send", "dialog_id": dialog_id, "text": "x" * 4097, "client_msg_id": cmid()}, "invalid"
    )
    assert "text" in reply["message"]
    # PostgreSQL cannot store NUL in text: refused up front, not sent and then never stored.
    reply = await expect_error(
        alice, {"type": "send", "dialog_id": dialog_id, "text": "a\u0000b", "client_msg_id": cmid()}, "invalid"
    )
    assert "text" in reply["message"]
    # The bound applies after trimming: 4096 characters with spaces around are fine.
    longest = await alice.send(dialog_id, "  " + "y" * 4096 + "  ")
    assert longest["text"] == "y" * 4096 and longest["seq"] == 1
    shortest = await alice.send(dialog_id, " z ")
    assert shortest["text"] == "z" and shortest["seq"] == 2


async def test_send_errors(stack: Stack) -> None:
    alice, bob, dialog_id = await pair(stack)
    carol = await new_user(stack, "carol", gateway=0)
    await new_user(stack, "dave", gateway=1)
    bob_carol = (await bob.open_dialog("carol"))["id"]
    send = {"type": "send", "text": "hi", "client_msg_id": "c"}
    # Someone else's dialog, and a dialog with a user one never opened.
    await expect_error(alice, {**send, "dialog_id": bob_carol}, "not_member")
    await expect_error(alice, {**send, "dialog_id": dialogs.id_of(uid(alice), uid(carol))}, "not_member")
    for bad in ("abc", dialogs.id_of(1, 1), dialogs.misordered_id_of(uid(alice), uid(carol)), "", "x" * 65):
        reply = await expect_error(alice, {**send, "dialog_id": bad}, "invalid")
        assert "dialog_id" in reply["message"]
    for field in ("dialog_id", "text", "client_msg_id"):
        frame = {**send, "dialog_id": dialog_id}
        del frame[field]
        reply = await expect_error(alice, frame, "invalid")
        assert field in reply["message"]
    reply = await expect_error(alice, {**send, "dialog_id": dialog_id, "client_msg_id": ""}, "invalid")
    assert "client_msg_id" in reply["message"]
    reply = await expect_error(alice, {**send, "dialog_id": dialog_id, "text": 5}, "invalid")
    assert "text" in reply["message"]
    # None of that produced a message.
    assert (await alice.send(dialog_id, "first"))["seq"] == 1
    assert await carol.history(bob_carol) == []


# --- history -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_history_pages_back_oldest_first(stack: Stack) -> None:
    alice, bob, dialog_id = await pair(stack)
    sent = [await (alice if n % 2 else bob).send(dialog_id, f"m{n + 1}") for n in range(120)]
    assert [m["seq"] for m in sent] == list(range(1, 121))

    reply = await bob.request({"type": "history", "dialog_id": dialog_id})
    assert reply == {"type": "history", "ref": reply["ref"], "dialog_id": dialog_id, "messages": sent[70:]}

    async def seqs(**page: int) -> list[int]:
        return [m["seq"] for m in await alice.history(dialog_id, **page)]

    assert await seqs(limit=500) == list(range(21, 121))
    assert await seqs(limit=100) == list(range(21, 121))
    assert await seqs(limit=1) == [120]
    assert await seqs(before_seq=71, limit=10) == list(range(61, 71))
    assert await seqs(before_seq=1000) == list(range(71, 121))
    assert await seqs(before_seq=1) == []
    assert await seqs(before_seq=0) == []

    # Walking back from the newest page reaches the first message, with nothing twice.
    walked: list[Frame] = []
    before: int | None = None
    while True:
        page = await bob.history(dialog_id, before_seq=before, limit=50)
        if not page:
            break
        assert [m["seq"] for m in page] == sorted(m["seq"] for m in page)
        walked = page + walked
        before = page[0]["seq"]
    assert walked == sent


async def test_history_errors(stack: Stack) -> None:
    alice, bob, dialog_id = await pair(stack)
    carol = await new_user(stack, "carol", gateway=0)
    bob_carol = (await bob.open_dialog("carol"))["id"]
    await expect_error(alice, {"type": "history", "dialog_id": bob_carol}, "not_member")
    await expect_error(alice, {"type": "history", "dialog_id": dialogs.id_of(uid(alice), uid(carol))}, "not_member")
    for frame, field in (
        ({"dialog_id": "nonsense"}, "dialog_id"),
        ({}, "dialog_id"),
        ({"dialog_id": dialog_id, "limit": 0}, "limit"),
        ({"dialog_id": dialog_id, "before_seq": -1}, "before_seq"),
        ({"dialog_id": dialog_id, "limit": "ten"}, "limit"),
    ):
        reply = await expect_error(alice, {"type": "history", **frame}, "invalid")
        assert field in reply["message"]
    assert await alice.history(dialog_id) == []


async def test_history_includes_messages_not_yet_stored(stack: Stack, db: asyncpg.Connection) -> None:
    alice, bob, dialog_id = await pair(stack)
    early = [await alice.send(dialog_id, f"stored {n}") for n in range(3)]
    await wait_rows(db, dialog_id, 3)

    await stack.stop_service("storage_worker")
    late = [await (bob if n % 2 else alice).send(dialog_id, f"pending {n}") for n in range(5)]
    assert [m["seq"] for m in late] == [4, 5, 6, 7, 8]
    assert await bob.history(dialog_id) == early + late
    assert await alice.history(dialog_id, limit=4) == late[1:]
    # A page straddling the stored and the pending messages.
    assert await alice.history(dialog_id, before_seq=6, limit=4) == early[1:] + late[:2]
    # With no worker, nothing new reached the table.
    assert [r["seq"] for r in await rows(db, dialog_id)] == [1, 2, 3]

    stack.start_service("storage_worker", serve_storage)
    stored = await wait_rows(db, dialog_id, 8)
    assert len(stored) == 8
    for row, message in zip(stored, early + late, strict=True):
        assert_row_is(row, message)
    assert await bob.history(dialog_id) == early + late


# --- two chat_service replicas ---------------------------------------------------------------


@pytest.mark.slow
async def test_concurrent_sends_to_two_replicas_number_without_gaps(
    two_replicas: Stack, db: asyncpg.Connection, rds: redis.asyncio.Redis,
) -> None:
    stack = two_replicas
    alice, bob, dialog_id = await pair(stack)
    clients = [alice, bob, await device(stack, "alice", gateway=1), await device(stack, "bob", gateway=0)]
    per_client = 50
    total = per_client * len(clients)

    sends_began = await server_ms(rds)
    replies = await asyncio.gather(*[
        client.send(dialog_id, f"{n} from {i}", client_msg_id=f"{i}-{n}")
        for n in range(per_client) for i, client in enumerate(clients)
    ])
    assert sorted(m["seq"] for m in replies) == list(range(1, total + 1))
    assert len({m["id"] for m in replies}) == total
    # Both replicas took part: each read requests off the stream after the sends began (the
    # sends are the only chat requests since then).
    last_reads = await last_reads_ms(rds, keys.chat_requests(layout.tag(dialog_id)))
    assert len(last_reads) == 2, last_reads
    assert all(at > sends_began for at in last_reads.values()), (sends_began, last_reads)

    # Every connection gets every message it did not send itself, in seq order.
    for i, client in enumerate(clients):
        own = {m["seq"] for m in replies[i :: len(clients)]}
        pushed = [(await client.next_push())["message"]["seq"] for _ in range(total - per_client)]
        assert pushed == sorted(set(range(1, total + 1)) - own)

    by_seq = sorted(replies, key=lambda m: m["seq"])
    history: list[Frame] = []
    before: int | None = None
    while len(history) < total:
        page = await alice.history(dialog_id, before_seq=before, limit=100)
        assert page
        history = page + history
        before = page[0]["seq"]
    assert history == by_seq

    stored = await wait_rows(db, dialog_id, total)
    assert [r["seq"] for r in stored] == list(range(1, total + 1))
    for row, message in zip(stored, by_seq, strict=True):
        assert_row_is(row, message)
