"""Helpers shared by the wire-protocol tests (test_protocol, test_dialogs, test_messages):
users on real gateways, raw frames, polling the database with a deadline."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg

from chat_client import ChatClient
from chat_client.client import Frame
from tests.harness import Stack

PASSWORD = "correct horse battery"
# How long any poll waits for the system to settle before the test fails.
DEADLINE_SECONDS = 20.0

T = TypeVar("T")


async def new_user(stack: Stack, name: str, gateway: int = 0) -> ChatClient:
    """Register ``name`` and log in on a fresh connection to gateway number ``gateway``."""
    client = await stack.client(gateway)
    await client.register(name, f"{name}@example.org", PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def device(stack: Stack, name: str, gateway: int = 0) -> ChatClient:
    """Another connection of an already registered user."""
    client = await stack.client(gateway)
    await client.login(name, PASSWORD)
    return client


def uid(client: ChatClient) -> int:
    assert client.user is not None
    user_id: int = client.user["id"]
    return user_id


def table_of(dialog_id: str) -> str:
    lo, hi = dialog_id.split("_")
    return f"chat_{lo}_{hi}"


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


async def poll(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Call ``probe`` until ``done`` holds for its result, or fail after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last saw {value!r}")
        await asyncio.sleep(0.02)


async def rows(db: asyncpg.Connection, table: str) -> list[asyncpg.Record]:
    exists = await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{table}"')
    if not exists:
        return []
    return list(await db.fetch(f'SELECT seq, id, sent_at, sender_id, text FROM "{table}" ORDER BY seq'))


async def wait_rows(db: asyncpg.Connection, table: str, n: int) -> list[asyncpg.Record]:
    """The table's rows once it holds at least ``n``."""
    return await poll(lambda: rows(db, table), lambda found: len(found) >= n, f"{n} rows in {table}")


def assert_row_is(row: asyncpg.Record, message: Frame) -> None:
    assert row["seq"] == message["seq"]
    assert str(row["id"]) == message["id"]
    assert row["sender_id"] == message["sender"]["id"]
    assert row["text"] == message["text"]
    assert row["sent_at"] == parse_time(message["sent_at"])
