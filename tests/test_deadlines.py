"""Every request the gateway forwards has a deadline (CHAT_REQUEST_TIMEOUT_SECONDS): past it the
client gets `unavailable` for that ref, and the late answer is dropped (docs/PROTOCOL.md,
"Deadlines"). Frames sent after a login and before its answer are handled as the user it
establishes ("Order on one connection"). The services are stopped for real (in-process tasks
cancelled, tests/harness.py), so nothing reads their request streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio

from auth_service.service import serve as serve_auth
from chat_client import ChatClient
from chat_client.client import Frame
from chat_service.service import serve as serve_chat
from chatkit import keys
from chatkit.envelopes import UserEvent
from chatkit.settings import Settings
from chatkit.wire import Message, MessageEvent, UserRef
from tests.support import layout
from tests.support.polling import wait_for_value as poll
from tests.support.protocol_doc import number
from tests.support.stack import Stack, start_stack
from tests.support.users import PASSWORD, new_user, uid

TIMEOUT = 1.0

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def quick(settings: Settings) -> AsyncIterator[Stack]:
    running = await start_stack(settings.with_overrides(request_timeout_seconds=TIMEOUT), gateways=1)
    try:
        yield running
    finally:
        await running.stop()


async def raw(client: ChatClient, ref: str, **frame: Any) -> None:
    await client.send_raw(json.dumps({**frame, "ref": ref}))


async def replies(client: ChatClient, n: int) -> dict[str, Frame]:
    """The next ``n`` frames the client did not wait for by ref, by their ref."""
    got = [await client.next_push(timeout=TIMEOUT * 10) for _ in range(n)]
    by_ref = {str(frame.get("ref")): frame for frame in got}
    assert len(by_ref) == n, got
    return by_ref


async def group_idle(rds: redis.asyncio.Redis, streams: list[str], group: str) -> None:
    """Wait until the group has read and acknowledged every entry of ``streams`` (the
    partitions of one request stream)."""
    for stream in streams:
        async def info(stream: str = stream) -> dict[str, Any]:
            [found] = [g for g in await rds.xinfo_groups(stream) if g["name"].decode() == group]
            entry: dict[str, Any] = found
            return entry

        await poll(info, lambda g: g["pending"] == 0 and g["lag"] == 0, f"{group} to drain {stream}")


async def test_login_then_requests_at_once_are_answered_as_that_user(stack: Stack) -> None:
    alice = await new_user(stack, "alice")
    await new_user(stack, "bob")
    dialog = await alice.open_dialog("bob")
    await alice.send(dialog["id"], "hello")
    second = await stack.client()
    # No wait between them: history and dialogs are sent before the login is answered.
    await raw(second, "L", type="login", username="alice", password=PASSWORD)
    await raw(second, "H", type="history", dialog_id=dialog["id"])
    await raw(second, "D", type="dialogs")
    got = await replies(second, 3)
    assert got["L"]["type"] == "logged_in", got
    assert got["H"]["type"] == "history", got
    assert [m["text"] for m in got["H"]["messages"]] == ["hello"]
    assert got["D"]["type"] == "dialogs", got
    assert [d["id"] for d in got["D"]["dialogs"]] == [dialog["id"]]


async def test_a_failed_login_leaves_the_waiting_request_unauthenticated(stack: Stack) -> None:
    await new_user(stack, "alice")
    client = await stack.client()
    await raw(client, "L", type="login", username="alice", password="wrong password")
    await raw(client, "D", type="dialogs")
    got = await replies(client, 2)
    assert got["L"]["code"] == "bad_credentials", got
    assert got["D"]["code"] == "unauthenticated", got


async def test_auth_service_stopped(quick: Stack, rds: redis.asyncio.Redis) -> None:
    await new_user(quick, "alice")
    client = await quick.client()
    await quick.stop_service("auth_service")
    # The login gets no answer: `unavailable` past the deadline; the dialogs request sent right
    # behind it waited for it (bounded by that deadline), and is handled as nobody's.
    await raw(client, "L", type="login", username="alice", password=PASSWORD)
    await raw(client, "D", type="dialogs")
    got = await replies(client, 2)
    assert got["L"]["type"] == "error" and got["L"]["code"] == "unavailable", got
    assert got["D"]["code"] == "unauthenticated", got

    # auth_service back: it answers the stale login now, past its deadline: dropped, so the
    # connection did not become alice's and got no stray frame.
    quick.start_service("auth_service", serve_auth)
    await group_idle(rds, layout.AUTH_REQUESTS, keys.AUTH_GROUP)
    # This answer travels behind the late one on the gateway's channel.
    wrong = await client.request({"type": "login", "username": "alice", "password": "not the password"})
    assert wrong["code"] == "bad_credentials", wrong
    still = await client.request({"type": "dialogs"})
    assert still["code"] == "unauthenticated", still
    assert client.pending_pushes() == 0
    await client.login("alice", PASSWORD)
    assert await client.dialogs() == []


async def test_every_chat_service_stopped(quick: Stack, rds: redis.asyncio.Redis) -> None:
    alice = await new_user(quick, "alice")
    bob = await new_user(quick, "bob")
    dialog = await alice.open_dialog("bob")
    for name in [name for name in quick.tasks if name.startswith("chat_service")]:
        await quick.stop_service(name)

    # A send with no chat_service: `unavailable` for its ref.
    frame = {"type": "send", "dialog_id": dialog["id"], "text": "are you there", "client_msg_id": "c-1"}
    reply = await alice.request(frame)
    assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    assert "client_msg_id" in reply["message"]

    # A sync that times out lets go of the live events held for its reply.
    await bob.send_raw(json.dumps({"type": "sync", "ref": "S"}))
    message = Message(id="m-1", dialog_id=dialog["id"], seq=7, sender=UserRef(id=uid(alice), username="alice"),
                      text="live", sent_at="2026-01-01T00:00:00.000Z")
    event = UserEvent(frame=msgspec.Raw(msgspec.json.encode(MessageEvent(message=message))),
                      dialog_id=dialog["id"], seq=7)
    await rds.publish(keys.user_channel(uid(bob)), msgspec.json.encode(event))
    timed_out = await bob.next_push(timeout=TIMEOUT * 10)
    assert timed_out["type"] == "error" and timed_out["code"] == "unavailable" and timed_out["ref"] == "S"
    held = await bob.next_push(timeout=TIMEOUT * 10)
    assert held["type"] == "message" and held["message"]["text"] == "live", held

    # chat_service back: the send that timed out was accepted after all; its late `sent` is
    # dropped, and resending with the same client_msg_id is what makes it safe: the same message.
    quick.start_service("chat_service-1", serve_chat)
    await group_idle(rds, layout.CHAT_REQUESTS, keys.CHAT_GROUP)
    again = await alice.call(frame)
    assert again["message"]["seq"] == 1 and again["message"]["text"] == "are you there"
    assert [m["seq"] for m in await alice.history(dialog["id"])] == [1]
    assert alice.pending_pushes() == 0


def test_the_documented_default_deadline_is_the_settings_default() -> None:
    documented = number(r"`CHAT_REQUEST_TIMEOUT_SECONDS`, (\d+) s by default")
    assert Settings().request_timeout_seconds == documented
