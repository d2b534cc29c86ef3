"""The send path's bytes come from the schemas: chat_service.send_frames cuts the envelopes at
placeholders once, accept.lua joins the pieces around the message and its seq. Checked here
without Redis (the pieces against msgspec's own encoding), against the script's text (its
KEYS and ARGV named as AcceptCall names them), and on real Valkey through the running stack:
everything the script writes decodes strictly into the envelope types and is byte for byte
what msgspec encodes from the same values."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import msgspec
import pytest
import redis.asyncio
from redis.asyncio.client import PubSub

from chat_client import ChatClient
from chat_service.accept import ARG_FIELDS, KEY_FIELDS, SCRIPT
from chat_service.send_frames import EVENT_AFTER_SEQ, EVENT_BEFORE_MESSAGE, send_pieces
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD, ConnReply, UserEvent
from chatkit.template import cut, placeholder
from chatkit.wire import Message, MessageEvent, Send, Sent, UserRef, frame_tag, wire_time
from tests.support import layout
from tests.support.stack import Stack

_encode = msgspec.json.Encoder().encode

# Text that JSON must escape, and text that looks like the pieces' own bytes.
TEXTS = [
    "hi",
    'quote " backslash \\ newline \n tab \t nul-free control \x01 and "seq":0,',
    "unicode é 漢字 🙂 \u2028 line separator",
    '},"skip_conn":"x","dialog_id":"1_2","seq":',
]


def message_of(seq: int, text: str, ref: str | None) -> tuple[Message, str, str | None]:
    sender = UserRef(id=7, username="alice.b-c_d")
    message = Message(
        id=str(uuid.uuid4()), dialog_id=DialogKey(7, 12).id, seq=seq, sender=sender, text=text,
        sent_at="2026-11-27T13:44:03.123Z",
    )
    return message, "gateway-1.42", ref


def expected_event(message: Message, skip_conn: str) -> bytes:
    frame = msgspec.Raw(_encode(MessageEvent(message=message)))
    return _encode(UserEvent(frame=frame, skip_conn=skip_conn, dialog_id=message.dialog_id, seq=message.seq))


def expected_reply(message: Message, conn: str, client_msg_id: str, ref: str | None, request: int = 0) -> bytes:
    frame = msgspec.Raw(_encode(Sent(client_msg_id=client_msg_id, message=message, ref=ref)))
    reply = _encode(ConnReply(conn=conn, frame=frame, answers=frame_tag(Send), request=request))
    # send_pieces writes the request number even when it is 0 (decoded the same as omitted).
    return reply if request else reply[:-1] + b',"request":0}'



# --- the pieces, without Redis ---------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("ref", [None, "r-1", 'ref "quoted"'])
@pytest.mark.parametrize("request_no", [0, 77])
def test_pieces_join_to_what_msgspec_encodes(text: str, ref: str | None, request_no: int) -> None:
    message, conn, ref = message_of(1234567, text, ref)
    message_before, message_after, event_before_seq, reply_before, reply_after = send_pieces(
        message.id, message.dialog_id, message.sender, message.text, message.sent_at, conn, "cmid-1", ref,
        request_no,
    )
    # What accept.lua does with them.
    seq = str(message.seq).encode()
    joined = message_before + seq + message_after
    event = EVENT_BEFORE_MESSAGE + joined + event_before_seq + seq + EVENT_AFTER_SEQ
    reply = reply_before + joined + reply_after
    assert joined == _encode(message)
    assert event == expected_event(message, conn)
    assert reply == expected_reply(message, conn, "cmid-1", ref, request_no)
    assert msgspec.json.decode(reply, type=ConnReply).request == request_no


def test_cut_checks_each_placeholder_once_and_in_order() -> None:
    a, b = _encode(placeholder("a")), _encode(placeholder("b"))
    assert cut(b"[" + a + b"," + b + b"]", a, b) == (b"[", b",", b"]")
    with pytest.raises(ValueError, match=r"exactly once.*found 0"):
        cut(b"[" + a + b"]", a, b)
    with pytest.raises(ValueError, match=r"exactly once.*found 2"):
        cut(b"[" + a + b"," + a + b"]", a)
    with pytest.raises(ValueError, match="in the order"):
        cut(b"[" + b + b"," + a + b"]", a, b)


def test_script_names_its_keys_and_args_as_accept_call_does() -> None:
    named = re.findall(r"^local (\w+) = (KEYS|ARGV)\[(\d+)\]", SCRIPT, flags=re.MULTILINE)
    script_keys = [(int(n), name) for name, kind, n in named if kind == "KEYS"]
    script_args = [(int(n), name) for name, kind, n in named if kind == "ARGV"]
    assert script_keys == list(enumerate(KEY_FIELDS, start=1))
    assert script_args == list(enumerate(ARG_FIELDS, start=1))
    # Nothing reads KEYS or ARGV but those lines.
    assert len(re.findall(r"KEYS\[|ARGV\[", SCRIPT)) == len(named)


# --- the real script on Valkey ------------------------------------------------------------


class Heard:
    """Everything published on the channels of one subscription, in order."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.items: list[tuple[str, bytes]] = []

    async def subscribe(self, *channels: str, pattern: str) -> None:
        """Subscribe, and wait until the server confirms, so nothing published later is missed."""
        if channels:
            await self.pubsub.subscribe(*channels)
        await self.pubsub.psubscribe(pattern)
        confirmed = 0
        async with asyncio.timeout(10):
            while confirmed < len(channels) + 1:
                item = await self.pubsub.get_message(timeout=1.0)
                if item is not None and item["type"] in ("subscribe", "psubscribe"):
                    confirmed += 1

    def on(self, channel: str) -> list[bytes]:
        return [data for c, data in self.items if c == channel]

    def send_replies(self) -> list[bytes]:
        """What came on gateway channels in answer to a send."""
        prefix = keys.gateway_channel("")
        return [
            data for c, data in self.items
            if c.startswith(prefix) and msgspec.json.decode(data, type=ConnReply).answers == frame_tag(Send)
        ]

    async def until(self, enough: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not enough():
                item = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if item is not None:
                    self.items.append((item["channel"].decode(), item["data"]))


@pytest.fixture
async def heard(rds: redis.asyncio.Redis) -> AsyncIterator[Heard]:
    pubsub = rds.pubsub()
    try:
        yield Heard(pubsub)
    finally:
        await pubsub.aclose()


async def user(stack: Stack, name: str) -> tuple[ChatClient, UserRef]:
    client = await stack.client()
    await client.register(name, f"{name}@example.org", "password-123")
    reply = await client.login(name, "password-123")
    return client, UserRef(id=reply["user"]["id"], username=name)


async def test_what_the_script_writes_decodes_into_the_envelopes(
    stack: Stack, rds: redis.asyncio.Redis, heard: Heard,
) -> None:
    # Without the storage worker the stream entry and the pending member stay to be read.
    await stack.stop_service("storage_worker")
    alice, alice_ref = await user(stack, "alice")
    _, bob_ref = await user(stack, "bob")
    dialog_id = str((await alice.open_dialog("bob"))["id"])
    alice_channel, bob_channel = keys.user_channel(alice_ref.id), keys.user_channel(bob_ref.id)
    await heard.subscribe(alice_channel, bob_channel, pattern=keys.gateway_channel("*"))
    text = TEXTS[1]

    sent = await alice.call({"type": "send", "dialog_id": dialog_id, "text": text, "client_msg_id": "c-1"})
    await heard.until(lambda: bool(heard.on(alice_channel) and heard.on(bob_channel) and heard.send_replies()))

    # The messages stream entry and the pending member: the message; the record: its seq and id.
    entries = await rds.xrange(layout.messages(dialog_id))
    assert isinstance(entries, list) and len(entries) == 1, entries
    fields = entries[0][1]
    assert fields is not None
    data = fields[ENTRY_FIELD]
    message = msgspec.json.decode(data, type=Message, strict=True)
    assert message.dialog_id == dialog_id and message.seq == 1 and message.sender == alice_ref
    assert message.text == text and str(uuid.UUID(message.id)) == message.id
    assert wire_time(datetime.fromisoformat(message.sent_at)) == message.sent_at
    assert data == _encode(message)
    assert await rds.get(layout.record(dialog_id, alice_ref.id, "c-1")) == f"1:{message.id}".encode()
    assert await rds.zrange(layout.pending(dialog_id), 0, -1, withscores=True) == [(data, 1.0)]

    # The reply on the sender's gateway channel, and the event on both users' channels.
    [reply_data] = heard.send_replies()
    reply = msgspec.json.decode(reply_data, type=ConnReply, strict=True)
    assert msgspec.json.decode(reply.frame, type=Sent, strict=True) == Sent(
        client_msg_id="c-1", message=message, ref=sent["ref"],
    )
    # The gateway numbered the request; the reply says which one it answers.
    assert reply.request > 0
    assert reply_data == expected_reply(message, reply.conn, "c-1", sent["ref"], reply.request)
    for channel in (alice_channel, bob_channel):
        [event_data] = heard.on(channel)
        event = msgspec.json.decode(event_data, type=UserEvent, strict=True)
        assert msgspec.json.decode(event.frame, type=MessageEvent, strict=True) == MessageEvent(message=message)
        assert event_data == expected_event(message, reply.conn)
    # What the client got is the reply's frame.
    assert sent == msgspec.json.decode(reply.frame)


async def test_refless_and_repeated_sends_reply_as_msgspec_encodes(stack: Stack, heard: Heard) -> None:
    alice, _ = await user(stack, "alice")
    await user(stack, "bob")
    dialog_id = str((await alice.open_dialog("bob"))["id"])
    await heard.subscribe(pattern=keys.gateway_channel("*"))
    frame = {"type": "send", "dialog_id": dialog_id, "text": TEXTS[2], "client_msg_id": "c-2"}
    # No ref: the reply's frame has none, and reaches the client as a push.
    await alice.send_raw(_encode(frame).decode())
    first = await alice.next_push()
    # The same client_msg_id again, with a ref: the first message, answered again.
    second = await alice.call(frame)
    await heard.until(lambda: len(heard.send_replies()) >= 2)

    replies = heard.send_replies()
    assert len(replies) == 2
    envelopes = [msgspec.json.decode(data, type=ConnReply, strict=True) for data in replies]
    one, two = (msgspec.json.decode(r.frame, type=Sent, strict=True) for r in envelopes)
    assert one.ref is None and two.ref == second["ref"]
    assert one.message == two.message and one.message.seq == 1
    assert envelopes[0].request != envelopes[1].request
    assert replies[0] == expected_reply(one.message, envelopes[0].conn, "c-2", None, envelopes[0].request)
    assert replies[1] == expected_reply(one.message, envelopes[1].conn, "c-2", second["ref"], envelopes[1].request)
    assert first == msgspec.json.decode(envelopes[0].frame)
