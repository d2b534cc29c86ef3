"""The error codes a client can do nothing about but retry or report (docs/PROTOCOL.md):
`internal` from a handler that really failed, `unavailable` from chat_service when PostgreSQL
is unreachable and from the gateway itself when it cannot forward to Redis. Each comes back
through a real gateway, on the request's own ref, and leaves the connection usable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from chat_client import ChatClient
from chat_client.client import Frame
from chatkit.settings import Settings
from tests.support.db import wait_rows
from tests.support.dialogs import table_of
from tests.support.polling import DEFAULT_TIMEOUT, wait_for_value
from tests.support.protocol import cmid
from tests.support.stack import Stack, start_stack
from tests.support.tcp_proxy import TcpProxy
from tests.support.users import new_user

pytestmark = pytest.mark.timeout(90)


async def answer_to(client: ChatClient, frame: Frame, ref: str) -> Frame:
    """Send ``frame`` with our own ``ref`` and return the frame that answers it. Anything else
    arriving meanwhile may only be a `resync` (a gateway whose subscription came back)."""
    await client.send_raw(msgspec.json.encode({**frame, "ref": ref}))
    while True:
        reply = await client.next_push(timeout=DEFAULT_TIMEOUT)
        if reply.get("ref") == ref:
            return reply
        assert reply["type"] == "resync", f"expected the answer to {ref!r} or a resync, got {reply}"


def assert_error(reply: Frame, code: str, ref: str) -> None:
    assert reply["type"] == "error", f"expected an error frame, got {reply}"
    assert reply["code"] == code, f"expected code {code!r}, got {reply}"
    assert reply["ref"] == ref, f"expected ref {ref!r}, got {reply}"
    assert set(reply) == {"type", "ref", "code", "message"}, reply
    assert isinstance(reply["message"], str) and reply["message"], reply


async def pair(stack: Stack) -> tuple[ChatClient, ChatClient, str]:
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog = await alice.open_dialog("bob")
    return alice, bob, str(dialog["id"])


# --- internal ----------------------------------------------------------------------------------


async def test_a_handler_that_fails_answers_internal(stack: Stack, db: asyncpg.Connection) -> None:
    alice, bob, dialog_id = await pair(stack)
    sent = await alice.send(dialog_id, "before the table goes")
    pushed = await bob.next_push()
    assert pushed["type"] == "message" and pushed["message"]["id"] == sent["id"], pushed
    await wait_rows(db, dialog_id, 1)  # storage is done with the table
    # A real failure inside chat_service: the dialog's table is gone, so reading it fails with
    # an error that is neither the client's fault nor an unreachable server.
    await db.execute(f'DROP TABLE "{table_of(dialog_id)}"')

    history = await answer_to(bob, {"type": "history", "dialog_id": dialog_id}, "history-1")
    assert_error(history, "internal", "history-1")
    assert "chat_" not in history["message"], f"the table's name leaked to the client: {history}"
    sync = await answer_to(alice, {"type": "sync", "dialogs": {dialog_id: 0}}, "sync-1")
    assert_error(sync, "internal", "sync-1")

    # The connections stay usable, and what does not touch the table still works.
    assert [d["id"] for d in await bob.dialogs()] == [dialog_id]
    again = await alice.send(dialog_id, "after", cmid())
    assert again["seq"] == sent["seq"] + 1


# --- unavailable from chat_service -------------------------------------------------------------


@contextlib.asynccontextmanager
async def stack_through_proxy(settings: Settings, field: str) -> AsyncIterator[tuple[Stack, TcpProxy]]:
    """The stack with every service and gateway reaching the server of ``field`` (a URL
    setting) through a proxy the test can stop and start."""
    url = getattr(settings, field)
    proxy = TcpProxy.for_url(url)
    await proxy.start()
    try:
        running = await start_stack(settings.with_overrides(**{field: proxy.url(url)}))
        try:
            yield running, proxy
        finally:
            await running.stop()
    finally:
        await proxy.stop()


@pytest.fixture
async def on_db_proxy(settings: Settings) -> AsyncIterator[tuple[Stack, TcpProxy]]:
    async with stack_through_proxy(settings, "database_url") as proxied:
        yield proxied


async def test_chat_service_without_postgres_answers_unavailable(on_db_proxy: tuple[Stack, TcpProxy]) -> None:
    stack, db_proxy = on_db_proxy
    alice, bob, dialog_id = await pair(stack)  # alice sends, so nothing is pushed to her
    await alice.send(dialog_id, "hello")
    await db_proxy.stop()

    listed = await answer_to(alice, {"type": "dialogs"}, "dialogs-1")
    assert_error(listed, "unavailable", "dialogs-1")
    history = await answer_to(alice, {"type": "history", "dialog_id": dialog_id}, "history-1")
    assert_error(history, "unavailable", "history-1")

    await db_proxy.start()

    async def history_now() -> Frame:
        return await bob.request({"type": "history", "dialog_id": dialog_id})

    recovered = await wait_for_value(history_now, lambda r: r["type"] == "history", "history once PostgreSQL is back")
    assert [m["text"] for m in recovered["messages"]] == ["hello"]


# --- unavailable from the gateway itself -------------------------------------------------------


@pytest.fixture
async def on_redis_proxy(settings: Settings) -> AsyncIterator[tuple[Stack, TcpProxy]]:
    async with stack_through_proxy(settings, "redis_url") as proxied:
        yield proxied


async def test_a_gateway_that_cannot_forward_answers_unavailable(on_redis_proxy: tuple[Stack, TcpProxy]) -> None:
    stack, redis_proxy = on_redis_proxy
    alice, _, dialog_id = await pair(stack)
    await redis_proxy.stop()

    frame = {"type": "send", "dialog_id": dialog_id, "text": "into the void", "client_msg_id": cmid()}
    refused = await answer_to(alice, frame, "send-1")
    assert_error(refused, "unavailable", "send-1")
    assert not alice.closed, "the gateway dropped the connection instead of answering"

    await redis_proxy.start()

    async def resend() -> Frame:
        # A reply published while the gateway's subscription is still coming back is lost
        # (pub/sub is at most once): a client resends with the same client_msg_id, as here.
        try:
            return await alice.request(frame, timeout=5)
        except TimeoutError:
            return {"type": "no answer within 5 s"}

    # The same client_msg_id once Redis is back: the message is accepted (once).
    sent = await wait_for_value(resend, lambda r: r["type"] == "sent", "the resend to be accepted once Redis is back")
    assert sent["message"]["seq"] == 1, sent
