"""Live events held while a `sync` is in flight are bounded like any outgoing queue
(docs/DELIVERY.md, "a slow client"): up to CHAT_SEND_QUEUE_LIMIT of them wait and follow the
reply; one more closes the connection with 4008 (docs/PROTOCOL.md, "Close codes"), and the
client that reconnects, logs in with `auth` and syncs has every message.

A sync is kept in flight for real: a transaction holding `users` in ACCESS EXCLUSIVE mode
blocks the sync's read of the user's dialogs in PostgreSQL, while sends (Redis only, once
the dialog is open) go on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
import websockets

from chat_client import ChatClient
from chatkit.settings import Settings
from tests.support.polling import wait_for_value
from tests.support.stack import Stack, start_stack
from tests.support.users import new_user

# Small, so that a handful of messages fill it; the doc's code for a full queue.
QUEUE_LIMIT = 4
CLOSE_SLOW_CONSUMER = 4008


@pytest.fixture
async def small_queue(settings: Settings) -> AsyncIterator[Stack]:
    running = await start_stack(settings.with_overrides(send_queue_limit=QUEUE_LIMIT))
    try:
        yield running
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def users_locked(settings: Settings) -> AsyncIterator[None]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def sync_blocked(db: asyncpg.Connection) -> None:
    """Until a query reading `users` (the sync's read of the user's dialogs, which joins it)
    waits for the lock: the sync has left the gateway, so the gateway is holding this
    connection's live events."""
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE '%users%' AND pid <> pg_backend_pid()"
    )
    await wait_for_value(lambda: db.fetchval(waiting), lambda n: n >= 1, "the sync to wait for the users lock")


async def test_events_held_past_the_queue_limit_close_4008(
    small_queue: Stack, settings: Settings, db: asyncpg.Connection
) -> None:
    stack = small_queue
    alice = await new_user(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]

    # Exactly the limit held: the connection stays, the reply carries them, none comes twice.
    async with users_locked(settings):
        syncing = asyncio.create_task(bob.call({"type": "sync", "dialogs": {dialog_id: 0}}, timeout=30))
        await sync_blocked(db)
        held = [await alice.send(dialog_id, f"held {n}") for n in range(QUEUE_LIMIT)]
    synced = await syncing
    assert synced["messages"] == held and synced["dialogs"] == {dialog_id: QUEUE_LIMIT}
    after = await alice.send(dialog_id, "after the sync")
    assert await bob.next_push() == {"type": "message", "message": after}
    assert not bob.closed

    # One more than the limit: closed with 4008 while the sync is still held up.
    async with users_locked(settings):
        # Without a ref: the reply, were it to come, is no request's to wait for.
        await bob.send_raw(json.dumps({"type": "sync", "dialogs": {dialog_id: after["seq"]}}))
        await sync_blocked(db)
        missed = [await alice.send(dialog_id, f"missed {n}") for n in range(QUEUE_LIMIT + 1)]
        await asyncio.wait_for(bob.ws.wait_closed(), 20)
    assert bob.ws.close_code == CLOSE_SLOW_CONSUMER, (bob.ws.close_code, bob.ws.close_reason)
    with pytest.raises(websockets.ConnectionClosed):
        await bob.ws.send('{"type":"dialogs"}')

    # What the doc says to do: reconnect, `auth`, `sync`; nothing is lost.
    assert bob.token is not None
    again = await stack.client(0)
    await again.auth(bob.token)
    resynced = await again.call({"type": "sync", "dialogs": {dialog_id: after["seq"]}})
    assert resynced["messages"] == missed
    assert resynced["dialogs"] == {dialog_id: after["seq"] + QUEUE_LIMIT + 1}
    await assert_still_chatting(alice, again, dialog_id)


async def assert_still_chatting(alice: ChatClient, bob: ChatClient, dialog_id: str) -> None:
    live = await alice.send(dialog_id, "still here")
    assert await bob.next_push() == {"type": "message", "message": live}
