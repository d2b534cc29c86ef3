"""`python -m storage_worker.dead`: list, replay and drop entries of chat:dead on a real Valkey,
with entries dead-lettered the way services do it (StreamConsumer.dead_letter)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import redis.asyncio

from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from chatkit.streams import Entry, StreamConsumer, ensure_group
from storage_worker import dead
from tests.support import layout


async def _dead_letter(redis_client: RedisClient, stream: str, group: str, data: bytes) -> str:
    """Put ``data`` on ``stream``, take it as a consumer of ``group``, and dead-letter it."""
    await ensure_group(redis_client, stream, group)
    await redis_client.call("XADD", stream, "*", ENTRY_FIELD, data)
    consumer = StreamConsumer(redis_client, [stream], group, "test", block_ms=100)
    try:
        [entry] = await consumer.read(1)
        await consumer.dead_letter(Entry(entry.id, entry.data, deliveries=6, stream=stream), "still failing: test")
    finally:
        await consumer.close()
    [(dead_id, _)] = (await redis_client.call("XREVRANGE", keys.DEAD_LETTERS, "+", "-", "COUNT", 1))
    return str(dead_id.decode())


async def test_list_shows_each_entry_with_its_origin_and_reason(
    redis_client: RedisClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await _dead_letter(redis_client, layout.MESSAGES[0], keys.STORAGE_GROUP, b'{"poison":1}')
    second = await _dead_letter(redis_client, layout.CHAT_REQUESTS[0], keys.CHAT_GROUP, b'{"poison":2}')
    assert await dead.main(["list"], settings) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{first}  from {layout.MESSAGES[0]} ")
    assert "deliveries 6" in out[0] and "reason: still failing: test" in out[0]
    assert out[1].startswith(f"{second}  from {layout.CHAT_REQUESTS[0]} ")
    assert out[2] == f"2 dead entries in {keys.DEAD_LETTERS}"


async def test_replay_puts_the_entry_back_on_its_stream_and_out_of_dead(
    redis_client: RedisClient, settings: Settings, rds: redis.asyncio.Redis
) -> None:
    dead_id = await _dead_letter(redis_client, layout.MESSAGES[0], keys.STORAGE_GROUP, b'{"poison":1}')
    before = await rds.xlen(layout.MESSAGES[0])
    assert await dead.main(["replay", dead_id], settings) == 0
    assert await rds.xlen(keys.DEAD_LETTERS) == 0
    assert await rds.xlen(layout.MESSAGES[0]) == before + 1
    newest = await redis_client.call("XREVRANGE", layout.MESSAGES[0], "+", "-", "COUNT", 1)
    assert newest[0][1] == [ENTRY_FIELD, b'{"poison":1}']
    # The group sees it as a new entry, to be handled again.
    info = await rds.xinfo_groups(layout.MESSAGES[0])
    assert info[0]["lag"] == 1


async def test_drop_all_empties_dead_and_touches_no_stream(
    redis_client: RedisClient, settings: Settings, rds: redis.asyncio.Redis
) -> None:
    for n in range(3):
        await _dead_letter(redis_client, layout.CHAT_REQUESTS[0], keys.CHAT_GROUP, b'{"n":%d}' % n)
    before = await rds.xlen(layout.CHAT_REQUESTS[0])
    assert await dead.main(["drop", "--all"], settings) == 0
    assert await rds.xlen(keys.DEAD_LETTERS) == 0
    assert await rds.xlen(layout.CHAT_REQUESTS[0]) == before


async def test_unknown_ids_and_foreign_streams_are_refused_with_what_was_expected(
    redis_client: RedisClient, settings: Settings, rds: redis.asyncio.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await dead.main(["replay", "1-1"], settings) == 1
    assert f"no entry '1-1' in {keys.DEAD_LETTERS}" in capsys.readouterr().err
    assert await dead.main(["drop"], settings) == 2
    assert "drop: expected entry ids or --all, got neither" in capsys.readouterr().err
    # A dead entry that names a stream this project does not own is never written there.
    await rds.xadd(keys.DEAD_LETTERS, {"stream": "elsewhere", "id": "1-0", "reason": "x", "deliveries": "6",
                                       ENTRY_FIELD: b"{}"})
    assert await dead.main(["replay", "--all"], settings) == 1
    assert "got 'elsewhere'" in capsys.readouterr().err
    assert await rds.exists("elsewhere") == 0
    assert await rds.xlen(keys.DEAD_LETTERS) == 1


@pytest.mark.timeout(60)
async def test_the_command_runs_as_a_module(redis_client: RedisClient, settings: Settings) -> None:
    await _dead_letter(redis_client, layout.MESSAGES[0], keys.STORAGE_GROUP, b'{"poison":1}')
    env = {**os.environ, "CHAT_REDIS_URL": settings.redis_url}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "storage_worker.dead", "list"],
        env=env, capture_output=True, text=True, timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"1 dead entries in {keys.DEAD_LETTERS}")
