"""Assertions on wire frames, shared by the protocol tests: error replies, pushed errors, a
connection still alive, the shape of a message."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from chat_client import ChatClient
from chat_client.client import Frame


def cmid() -> str:
    return uuid.uuid4().hex


async def expect_error(client: ChatClient, frame: Frame, code: str) -> Frame:
    """Send ``frame`` with a ref; the direct reply must be exactly an error frame with ``code``
    and that ref, and the connection must still answer afterwards."""
    reply = await client.request(frame)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert set(reply) == {"type", "ref", "code", "message"}, reply
    assert isinstance(reply["message"], str) and reply["message"], reply
    await assert_alive(client)
    return reply


async def expect_push_error(client: ChatClient, data: str | bytes, code: str) -> Frame:
    """Send raw ``data`` (a binary frame when bytes); the error comes back without a ref."""
    await client.ws.send(data)
    reply = await client.next_push()
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert set(reply) == {"type", "code", "message"}, reply
    await assert_alive(client)
    return reply


async def assert_alive(client: ChatClient) -> None:
    """The connection still takes requests: a logged-in one lists dialogs, an anonymous one
    gets `bad_credentials` for a login nobody can pass."""
    if client.user is None:
        reply = await client.request({"type": "login", "username": "nobody-at-all", "password": "x" * 8})
        assert reply["type"] == "error" and reply["code"] == "bad_credentials", reply
    else:
        reply = await client.request({"type": "dialogs"})
        assert reply["type"] == "dialogs", reply


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


def assert_message(message: Frame, *, dialog_id: str, sender: Frame, text: str, seq: int | None = None) -> None:
    assert set(message) == {"id", "dialog_id", "seq", "sender", "text", "sent_at"}, message
    assert message["dialog_id"] == dialog_id
    assert message["sender"] == {"id": sender["id"], "username": sender["username"]}
    assert message["text"] == text
    uuid.UUID(message["id"])
    parse_time(message["sent_at"])
    if seq is not None:
        assert message["seq"] == seq
