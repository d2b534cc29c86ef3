"""The partitioned layout in use (issue 14): a send's keys all in its dialog's slot, requests
routed to their partition, and every partition of every stream read by its group."""

from __future__ import annotations

import redis.asyncio

from chat_service.accept import SCRIPT, AcceptCall
from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.envelopes import ENTRY_FIELD
from chatkit.partitions import slot
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from chatkit.streams import StreamConsumer, ensure_groups
from chatkit.wire import UserRef
from gateway.protocol import Forward, route
from tests.support import layout
from tests.support.polling import wait_for_value
from tests.support.stack import Stack
from tests.support.users import new_user


def test_every_key_of_a_send_shares_the_dialogs_slot() -> None:
    key = DialogKey(3, 7)
    tag = layout.PARTITIONS.dialog_tag(key)
    call = AcceptCall(
        seq_counter=keys.dialog_seq(tag, key.id), idempotency_record=keys.client_msg_id(tag, key.id, 3, "c"),
        pending=keys.dialog_pending(tag, key.id), messages_stream=keys.messages(tag),
        request_stream=keys.chat_requests(tag), lo_channel=keys.user_channel(3), hi_channel=keys.user_channel(7),
        gateway_channel=keys.gateway_channel("g"), message_before_seq=b"", message_after_seq=b"",
        event_before_seq=b"", reply_before_message=b"", reply_after_message=b"", idempotency_ttl=1,
        request_entry_id=b"1-0", message_id="m",
    )
    declared = call.keys()
    assert len(declared) == 5
    assert {slot(name) for name in declared} == {slot(tag)}
    # The server checks it: the script declares itself so (Redis 7+ / Valkey).
    assert SCRIPT.startswith("#!lua\n")


def test_a_send_goes_to_its_dialogs_partition_and_the_rest_to_the_users() -> None:
    user = UserRef(id=5, username="eve")
    key = DialogKey(5, 9)
    send = route(
        '{"type":"send","dialog_id":"5_9","text":"hi","client_msg_id":"c"}', user, layout.PARTITIONS,
    )
    assert isinstance(send, Forward) and send.stream == keys.chat_requests(layout.PARTITIONS.dialog_tag(key))
    listing = route('{"type":"dialogs"}', user, layout.PARTITIONS)
    assert isinstance(listing, Forward) and listing.stream == layout.chat_requests_of_user(5)
    login = route('{"type":"login","username":"eve","password":"secret-123"}', None, layout.PARTITIONS)
    assert isinstance(login, Forward) and login.stream in layout.AUTH_REQUESTS
    # A malformed dialog id goes by user; chat_service refuses it from there.
    odd = route('{"type":"send","dialog_id":"x","text":"hi","client_msg_id":"c"}', user, layout.PARTITIONS)
    assert isinstance(odd, Forward) and odd.stream == layout.chat_requests_of_user(5)


async def test_every_partition_has_its_group_and_a_send_lands_in_its_partition(
    stack: Stack, rds: redis.asyncio.Redis,
) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    dialog_id = (await alice.open_dialog("bob"))["id"]

    async def groups() -> set[tuple[str, bytes]]:
        found = set()
        for names, group in (
            (layout.AUTH_REQUESTS, keys.AUTH_GROUP), (layout.CHAT_REQUESTS, keys.CHAT_GROUP),
            (layout.MESSAGES, keys.STORAGE_GROUP),
        ):
            for name in names:
                if await rds.exists(name):
                    found |= {(name, g["name"]) for g in await rds.xinfo_groups(name) if g["name"] == group.encode()}
        return found

    expected = len(layout.TAGS) * 3
    await wait_for_value(groups, lambda found: len(found) == expected, f"a group on each of {expected} streams")
    sent = await alice.send(dialog_id, "hello")
    await wait_for_value(lambda: rds.zcard(layout.pending(dialog_id)), lambda n: n == 0, "the message to be stored")
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await rds.xrange(layout.messages(dialog_id))  # type: ignore[assignment]
    assert [fields[b"e"].count(sent["id"].encode()) for _, fields in entries] == [1]
    others = [name for name in layout.MESSAGES if name != layout.messages(dialog_id)]
    assert [await rds.xlen(name) for name in others] == [0] * len(others)


async def test_a_read_over_many_partitions_returns_at_most_count(rds: redis.asyncio.Redis, settings: Settings) -> None:
    """XREADGROUP's COUNT is per stream: what comes beyond the count waits for the next read,
    so a service never takes more requests than it has room for, and none is lost."""
    streams = [f"test:partitioned:{tag}" for tag in layout.TAGS]
    client = RedisClient.from_url(settings.redis_url)
    consumer = StreamConsumer(client, streams, "g", "c", block_ms=100)
    try:
        await ensure_groups(client, streams, "g")
        for stream in streams:
            for n in range(3):
                await rds.xadd(stream, {ENTRY_FIELD: f"{stream} {n}".encode()})
        seen: list[bytes] = []
        for _ in range(200):
            batch = await consumer.read(5)
            assert len(batch) <= 5
            seen += [entry.data for entry in batch]
            for entry in batch:
                await consumer.ack(entry.stream, entry.id)
            if len(seen) == 3 * len(streams):
                break
        assert sorted(seen) == sorted(f"{s} {n}".encode() for s in streams for n in range(3))
        assert [(await rds.xpending(s, "g"))["pending"] for s in streams] == [0] * len(streams)
    finally:
        await consumer.close()
        await client.close()
