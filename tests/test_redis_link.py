"""chatkit.redis's command link, on a real server: it reconnects after its connection is
killed, a transaction is atomic on a link shared by many tasks, a script survives SCRIPT FLUSH,
AUTH and SELECT come from the URL, and an unreachable server says so."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
from typing import Any

import pytest
import redis.asyncio

from chatkit.redis import REDIS_DOWN, ConnectionLost, Link, RedisAddress, RedisClient, Unreachable, parse_address
from chatkit.settings import Settings
from tests.support.polling import wait_until


async def kill(rds: redis.asyncio.Redis, client_id: int) -> None:
    killed = await rds.execute_command("CLIENT", "KILL", "ID", client_id)  # type: ignore[no-untyped-call]
    assert killed == 1


async def test_a_command_in_flight_fails_and_the_next_reconnects(
    redis_client: RedisClient, rds: redis.asyncio.Redis
) -> None:
    reads = redis_client.blocking_link()
    first_id = await reads.call("CLIENT", "ID")
    blocked = reads.call("BLPOP", "nothing-ever", 0)
    await kill(rds, first_id)
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(blocked, 10)
    assert isinstance(ConnectionLost("x"), REDIS_DOWN)
    second_id = await reads.call("CLIENT", "ID")
    assert second_id != first_id
    assert await reads.call("PING") == b"PONG"


async def test_the_shared_link_comes_back_after_client_kill(
    redis_client: RedisClient, rds: redis.asyncio.Redis
) -> None:
    first_id = await redis_client.call("CLIENT", "ID")
    await kill(rds, first_id)
    # A command written before the link noticed the kill fails with ConnectionLost; one of
    # the next ones goes out on a new connection.
    for _ in range(100):
        try:
            assert await asyncio.wait_for(redis_client.call("PING"), 10) == b"PONG"
            break
        except ConnectionLost:
            await asyncio.sleep(0.01)
    assert await redis_client.call("CLIENT", "ID") != first_id
    await redis_client.call("SET", "k", "v")
    assert await rds.get("k") == b"v"


async def test_transactions_are_atomic_among_many_callers_on_one_link(redis_client: RedisClient) -> None:
    async def caller(index: int) -> list[Any]:
        issued: list[asyncio.Future[Any]] = []
        for step in range(30):
            if (index + step) % 2:
                issued.append(redis_client.call("INCR", "n"))
            else:
                issued.append(redis_client.transaction(("INCR", "n"), ("INCR", "n"), ("GET", "n")))
            if step % 3 == 0:
                await asyncio.sleep(0)
        return await asyncio.gather(*issued)

    outcomes = await asyncio.gather(*(caller(index) for index in range(40)))
    seen: list[int] = []
    for outcome in outcomes:
        for reply in outcome:
            if isinstance(reply, list):
                # A command of another caller inside this MULTI would add a reply here, and
                # that caller would have got b"QUEUED" instead of a number.
                first, second, read = reply
                assert (second, read) == (first + 1, str(first + 1).encode()), reply
                seen += [first, second]
            else:
                assert isinstance(reply, int), reply
                seen.append(reply)
    assert sorted(seen) == list(range(1, len(seen) + 1))
    assert await redis_client.call("GET", "n") == str(len(seen)).encode()


async def test_eval_script_survives_script_flush(redis_client: RedisClient) -> None:
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    sha = hashlib.sha1(script.encode()).hexdigest()
    await redis_client.call("SCRIPT", "FLUSH")
    assert await redis_client.eval_script(sha, script, ["counter"], [2]) == 2
    assert await redis_client.call("SCRIPT", "EXISTS", sha) == [1]
    assert await redis_client.eval_script(sha, script, ["counter"], [3]) == 5
    await redis_client.call("SCRIPT", "FLUSH")
    assert await redis_client.call("SCRIPT", "EXISTS", sha) == [0]
    assert await redis_client.eval_script(sha, script, ["counter"], [4]) == 9


async def test_auth_and_select_come_from_the_address(settings: Settings, rds: redis.asyncio.Redis) -> None:
    user, password = "chatkit-link-test", "link-test-password"
    await rds.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")  # type: ignore[no-untyped-call]
    plain = parse_address(settings.redis_url)
    address = dataclasses.replace(plain, username=user, password=password, db=plain.db + 1)
    authed = RedisClient(address)
    wrong = RedisClient(dataclasses.replace(address, password="not-the-password"))
    try:
        assert await authed.call("ACL", "WHOAMI") == user.encode()
        await authed.call("SET", "where", "next-db")
        assert await authed.call("GET", "where") == b"next-db"
        assert await rds.get("where") is None
        with pytest.raises(Unreachable) as refused:
            await wrong.call("PING")
        message = str(refused.value)
        assert "WRONGPASS" in message and "not-the-password" not in message and ":***@" in message
    finally:
        await authed.close()
        await wrong.close()
        await rds.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]


async def test_an_unreachable_server_fails_the_command_and_counts_as_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis_client = RedisClient(RedisAddress("127.0.0.1", port))
    try:
        with pytest.raises(Unreachable) as refused:
            await redis_client.call("PING")
        assert isinstance(refused.value, REDIS_DOWN)
        assert f"127.0.0.1:{port}" in str(refused.value)
        # A transaction fails the same way, all of it.
        with pytest.raises(Unreachable):
            await redis_client.transaction(("INCR", "n"), ("INCR", "n"))
    finally:
        await redis_client.close()


async def _clients_named(rds: redis.asyncio.Redis, name: str) -> int:
    listing = await rds.execute_command("CLIENT", "LIST")  # type: ignore[no-untyped-call]
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return sum(f" name={name} " in f" {line} " for line in text.splitlines())


async def test_close_while_connecting_leaves_no_socket_and_refuses_later_commands(
    settings: Settings, rds: redis.asyncio.Redis
) -> None:
    link = Link(parse_address(settings.redis_url))
    # The first command opens the connection; close() comes before it is up.
    first = link.call("CLIENT", "SETNAME", "closing-link")
    await link.close()
    with pytest.raises(Unreachable):
        await first
    with pytest.raises(Unreachable, match="is closed"):
        await link.call("PING")
    # No connection of this link is left on the server (one that got as far as its name).
    assert await _clients_named(rds, "closing-link") == 0
    assert link.backlog == 0


async def test_drop_closes_the_connection_and_the_next_command_opens_another(
    settings: Settings, rds: redis.asyncio.Redis
) -> None:
    link = Link(parse_address(settings.redis_url))
    try:
        await link.call("CLIENT", "SETNAME", "dropped-link")
        first_id = await link.call("CLIENT", "ID")
        await link.drop()
        await wait_until(lambda: _no_clients(rds, "dropped-link"), what="the dropped connection gone from the server")
        assert await link.call("CLIENT", "ID") != first_id
    finally:
        await link.close()


async def _no_clients(rds: redis.asyncio.Redis, name: str) -> bool:
    return await _clients_named(rds, name) == 0
