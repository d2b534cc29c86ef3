"""`sync` as docs/PROTOCOL.md describes it, beyond one dialog: several dialogs in one request
(oldest first within each, the `dialogs` map), the reply's caps (the doc's 500 messages and
about 256 KiB of text) with `more` and a follow-up sync that completes it, and a negative
`last_seq` refused. The caps are read from the doc (tests/support/protocol_doc.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from chat_client import ChatClient
from chat_client.client import Frame
from tests.support.protocol import assert_message, expect_error
from tests.support.protocol_doc import bounds
from tests.support.stack import Stack
from tests.support.users import device, new_user

LIMITS = bounds()
# Big messages fill the text cap long before the message cap.
BIG = LIMITS.text_max_default


async def send_many(client: ChatClient, dialog_id: str, texts: list[str]) -> list[Frame]:
    """Send ``texts`` a few at a time; the messages come back in seq order."""
    sent: list[Frame] = []
    for start in range(0, len(texts), 25):
        chunk = texts[start:start + 25]
        sent += await asyncio.gather(*(client.send(dialog_id, text) for text in chunk))
    return sorted(sent, key=lambda m: m["seq"])


def big_texts(count: int, tag: str, filler: str = "x") -> list[str]:
    """``count`` texts of the longest allowed length, in characters."""
    return [f"{tag}{n:04d}".ljust(BIG, filler) for n in range(count)]


def size(text: str) -> int:
    # "KiB of text": what the text weighs in the reply, as JSON carries it (UTF-8, escapes).
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def of_dialog(reply: Frame, dialog_id: str) -> list[Frame]:
    return [m for m in reply["messages"] if m["dialog_id"] == dialog_id]


async def sync_until_complete(client: ChatClient, positions: dict[str, int] | None) -> list[Frame]:
    """Sync, then sync again with the returned positions while the reply says `more`; check at
    each step that every dialog's part of the reply continues where the client stood, without
    a gap, up to the position the reply gives. Returns the replies."""
    replies: list[Frame] = []
    frame: Frame = {"type": "sync"} if positions is None else {"type": "sync", "dialogs": positions}
    for _ in range(20):
        reply = await client.call(frame)
        assert reply["type"] == "synced", reply
        if positions is not None:
            assert set(reply["dialogs"]) == set(positions), (positions, reply["dialogs"])
        for dialog_id, upto in reply["dialogs"].items():
            start = 0 if positions is None else positions[dialog_id]
            seqs = [m["seq"] for m in of_dialog(reply, dialog_id)]
            assert seqs == list(range(start + 1, upto + 1)), (dialog_id, start, upto, seqs)
        assert {m["dialog_id"] for m in reply["messages"]} <= set(reply["dialogs"]), reply["dialogs"]
        replies.append(reply)
        if not reply.get("more", False):
            return replies
        positions = reply["dialogs"]
        frame = {"type": "sync", "dialogs": positions}
    raise AssertionError(f"sync still said `more` after {len(replies)} replies")


async def test_one_sync_covers_several_dialogs_each_oldest_first(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    carol = await new_user(stack, "carol", gateway=0)
    await new_user(stack, "dave", gateway=1)
    with_bob = (await alice.open_dialog("bob"))["id"]
    with_carol = (await carol.open_dialog("alice"))["id"]
    with_dave = (await alice.open_dialog("dave"))["id"]
    not_alices = (await bob.open_dialog("carol"))["id"]
    assert len({with_bob, with_carol, with_dave, not_alices}) == 4

    # Both sides write, and the dialogs' messages interleave in time.
    sent: dict[str, list[Frame]] = {with_bob: [], with_carol: [], not_alices: []}
    for n in range(6):
        sent[with_bob].append(await (alice if n % 2 else bob).send(with_bob, f"bob-dialog {n}"))
        if n < 4:
            sent[with_carol].append(await (carol if n % 2 else alice).send(with_carol, f"carol-dialog {n}"))
        sent[not_alices].append(await bob.send(not_alices, f"not alice's {n}"))

    # A connection that got nothing live, asking from different positions in each dialog.
    laptop = await device(stack, "alice", gateway=1)
    reply = await laptop.call({"type": "sync", "dialogs": {with_bob: 2, with_carol: 0, with_dave: 0}})
    assert reply["dialogs"] == {with_bob: 6, with_carol: 4, with_dave: 0}
    assert reply.get("more", False) is False
    assert of_dialog(reply, with_bob) == sent[with_bob][2:]
    assert of_dialog(reply, with_carol) == sent[with_carol]
    assert len(reply["messages"]) == 4 + 4
    for message in reply["messages"]:
        assert_message(message, dialog_id=message["dialog_id"], sender=message["sender"], text=message["text"])

    # `dialogs` omitted: every dialog of hers from the start, and nobody else's.
    phone = await device(stack, "alice", gateway=0)
    everything = await phone.call({"type": "sync"})
    assert everything["dialogs"] == {with_bob: 6, with_carol: 4, with_dave: 0}
    assert of_dialog(everything, with_bob) == sent[with_bob]
    assert of_dialog(everything, with_carol) == sent[with_carol]
    assert of_dialog(everything, not_alices) == []
    assert len(everything["messages"]) == 6 + 4


async def test_sync_stops_at_the_documented_message_cap(stack: Stack) -> None:
    cap = LIMITS.sync_max_messages
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    sent = await send_many(alice, dialog_id, [f"m{n}" for n in range(cap + 20)])
    assert [m["seq"] for m in sent] == list(range(1, cap + 21))

    # Logged in only now, so nothing reached this connection live.
    bob = await device(stack, "bob", gateway=1)
    first = await bob.call({"type": "sync", "dialogs": {dialog_id: 0}})
    assert first["more"] is True
    assert first["messages"] == sent[:cap]
    assert first["dialogs"] == {dialog_id: cap}
    second = await bob.call({"type": "sync", "dialogs": first["dialogs"]})
    assert second["messages"] == sent[cap:]
    assert second["dialogs"] == {dialog_id: cap + 20}
    assert second.get("more", False) is False


# One byte per character, four (U+1F600 in UTF-8) and six (U+0001, escaped in JSON): the cap
# is on the text's size in the reply, not its length.
@pytest.mark.parametrize("filler", ["x", "\U0001f600", "\x01"], ids=["ascii", "four-byte", "escaped"])
async def test_sync_stops_near_the_documented_text_cap(stack: Stack, filler: str) -> None:
    cap = LIMITS.sync_max_text
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    texts = big_texts(cap // size(BIG * filler) + 8, "t", filler)
    count = len(texts)
    assert count < LIMITS.sync_max_messages  # so only the text can stop the reply
    assert sum(map(size, texts)) > cap + size(texts[0])
    sent = await send_many(alice, dialog_id, texts)

    bob = await device(stack, "bob", gateway=1)
    first = await bob.call({"type": "sync", "dialogs": {dialog_id: 0}})
    text = sum(size(m["text"]) for m in first["messages"])
    assert first.get("more") is True, f"one reply of {len(first['messages'])} messages, {text} bytes of text"
    # "About" the cap: it may stop short of it or pass it by at most one message.
    assert abs(text - cap) <= size(texts[0]), f"expected about {cap} bytes of text, got {text}"
    taken = len(first["messages"])
    assert first["messages"] == sent[:taken]
    assert first["dialogs"] == {dialog_id: taken}
    second = await bob.call({"type": "sync", "dialogs": first["dialogs"]})
    assert second["messages"] == sent[taken:]
    assert second["dialogs"] == {dialog_id: count}
    assert second.get("more", False) is False


async def test_more_across_dialogs_and_follow_up_syncs_complete_it(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    peers = ("bob", "carol", "dave")
    for name in peers:
        await new_user(stack, name, gateway=1)
    per_dialog = LIMITS.sync_max_text // BIG // 2  # two dialogs' worth fill about one reply
    sent: dict[str, list[Frame]] = {}
    for name in peers:
        dialog_id = (await alice.open_dialog(name))["id"]
        sent[dialog_id] = await send_many(alice, dialog_id, big_texts(per_dialog, name))

    replies = await sync_until_complete(await device(stack, "alice", gateway=1), None)
    assert len(replies) >= 2 and replies[0]["more"] is True
    assert replies[-1]["dialogs"] == {dialog_id: per_dialog for dialog_id in sent}
    for dialog_id, messages in sent.items():
        got = [m for reply in replies for m in of_dialog(reply, dialog_id)]
        assert got == messages, f"{dialog_id}: got seqs {[m['seq'] for m in got]}"

    # The same through explicit positions, from the middle of one dialog.
    positions = dict.fromkeys(sent, 0)
    middle = next(iter(sent))
    positions[middle] = 3
    replies = await sync_until_complete(await device(stack, "alice", gateway=0), positions)
    assert len(replies) >= 2
    got = [m for reply in replies for m in of_dialog(reply, middle)]
    assert got == sent[middle][3:]


async def test_negative_last_seq_is_invalid(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    reply = await expect_error(alice, {"type": "sync", "dialogs": {dialog_id: -1}}, "invalid")
    assert "dialogs" in reply["message"], reply
    # Zero is the smallest position, and fine.
    ok = await alice.call({"type": "sync", "dialogs": {dialog_id: 0}})
    assert ok["dialogs"] == {dialog_id: 0}
