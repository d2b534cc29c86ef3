"""chatkit.redis.errors: the classes real server error replies map to, whether they answer a
command or sit inside EXEC's reply."""

from __future__ import annotations

import pytest

from chatkit.redis import REDIS_DOWN, RedisClient, resp
from chatkit.redis import errors as e


async def test_real_replies_map_to_their_classes(redis_client: RedisClient) -> None:
    await redis_client.call("SET", "a-string", "x")
    with pytest.raises(e.WrongType) as wrong:
        await redis_client.call("LPUSH", "a-string", "y")
    assert wrong.value.code == "WRONGTYPE" and "WRONGTYPE" in str(wrong.value)
    with pytest.raises(e.NoScript):
        await redis_client.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(e.NoGroup):
        await redis_client.call("XREADGROUP", "GROUP", "nobody", "c", "STREAMS", "no-stream", ">")
    await redis_client.call("XGROUP", "CREATE", "s", "g", "0", "MKSTREAM")
    with pytest.raises(e.BusyGroup):
        await redis_client.call("XGROUP", "CREATE", "s", "g", "0", "MKSTREAM")
    with pytest.raises(e.ReplyError) as unknown:
        await redis_client.call("NO-SUCH-COMMAND")
    assert type(unknown.value) is e.ReplyError and unknown.value.code == "ERR"


async def test_a_refused_command_inside_a_transaction(redis_client: RedisClient) -> None:
    await redis_client.call("SET", "a-string", "x")
    # Runs, fails while executing: an error value among EXEC's replies, the others ran.
    replies = await redis_client.transaction(("INCR", "n"), ("LPUSH", "a-string", "y"), ("INCR", "n"))
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], e.WrongType)
    assert e.first_error(replies) is replies[1]
    # Refused while queueing (wrong arity): the server discards the whole transaction, and the
    # command's own refusal is what is raised, not EXECABORT's "previous errors".
    with pytest.raises(e.ReplyError) as refused:
        await redis_client.transaction(("INCR", "n"), ("GET",))
    assert "wrong number of arguments" in str(refused.value).lower()
    assert await redis_client.call("GET", "n") == b"2"


def test_the_class_follows_the_first_word() -> None:
    assert type(e.ReplyError("NOGROUP No such key 's'")) is e.NoGroup
    assert type(e.ReplyError("LOADING Redis is loading the dataset in memory")) is e.Loading
    assert type(e.ReplyError("WRONGPASS invalid username-password pair")) is e.AuthFailed
    moved = e.ReplyError("MOVED 3999 127.0.0.1:6381")
    assert isinstance(moved, e.Moved) and moved.slot == 3999 and moved.address == "127.0.0.1:6381"
    assert type(e.ReplyError("ERR anything else")) is e.ReplyError
    assert type(e.ReplyError("")) is e.ReplyError


def test_what_counts_as_redis_down() -> None:
    assert isinstance(e.ConnectionLost("x"), REDIS_DOWN)
    assert isinstance(e.Unreachable("x"), REDIS_DOWN) and isinstance(e.Unreachable("x"), ConnectionError)
    assert isinstance(e.ReplyError("LOADING busy"), REDIS_DOWN)
    assert isinstance(TimeoutError(), REDIS_DOWN)
    assert not isinstance(e.ReplyError("WRONGTYPE no"), REDIS_DOWN)
    assert not isinstance(e.ReplyError("NOSCRIPT no"), REDIS_DOWN)


def test_bytes_that_are_not_resp_raise_protocol_error() -> None:
    reader = resp.reader()
    reader.feed(b"?not resp\r\n")
    with pytest.raises(e.ProtocolError, match="reply type"):
        reader.gets()
