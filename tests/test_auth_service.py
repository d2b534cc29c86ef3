"""auth_service on real Valkey and PostgreSQL, driven through Redis by a fake gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import argon2
import asyncpg
import jwt
import msgspec
import pytest

from auth_service.service import serve
from auth_service.tokens import Session, Tokens, signing_key
from chatkit import wire
from chatkit.settings import Settings, SettingsError
from tests.support import layout
from tests.support.fake_gateway import FakeGateway, server_frame
from tests.support.polling import wait_until
from tests.support.stack import running
from tests.support.tcp_proxy import TcpProxy
from tests.support.users import PASSWORD


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[FakeGateway]:
    async with running(serve, settings), FakeGateway.open(settings.redis_url) as opened:
        yield opened


async def register(gateway: FakeGateway, username: str, email: str | None = None,
                   password: str = PASSWORD) -> wire.UserInfo:
    _, frame = await gateway.call(
        wire.Register(username=username, email=email or f"{username}@example.com", password=password)
    )
    assert isinstance(frame, wire.Registered), f"register {username}: expected registered, got {frame}"
    return frame.user


async def login(gateway: FakeGateway, username: str, password: str = PASSWORD) -> wire.LoggedIn:
    reply, frame = await gateway.call(wire.Login(username=username, password=password))
    assert isinstance(frame, wire.LoggedIn), f"login {username}: expected logged_in, got {frame}"
    assert reply.login == frame.user
    return frame


async def error_code(gateway: FakeGateway, frame: wire.ClientFrame, *, user: wire.UserRef | None = None) -> str:
    reply, answer = await gateway.call(frame, user=user)
    assert isinstance(answer, wire.Error), f"{frame}: expected an error, got {answer}"
    assert reply.login is None and reply.identity is None
    assert answer.ref == frame.ref
    return answer.code


def claims(settings: Settings, token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, signing_key(settings.secret), algorithms=["HS256"])
    return decoded


# --- register ----------------------------------------------------------------------------


async def test_register_stores_user_with_argon2id_hash(gateway: FakeGateway, db: asyncpg.Connection) -> None:
    reply, frame = await gateway.call(
        wire.Register(ref="r1", username="alice", email="Alice@Example.COM", password=PASSWORD)
    )
    assert isinstance(frame, wire.Registered)
    assert frame.ref == "r1"
    assert frame.user.username == "alice" and frame.user.email == "Alice@Example.COM"
    # Registering does not log the connection in.
    assert reply.login is None
    row = await db.fetchrow("SELECT id, username, email, password_hash FROM users")
    assert row is not None
    assert (row["id"], row["username"], row["email"]) == (frame.user.id, "alice", "Alice@Example.COM")
    assert row["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in row["password_hash"]
    assert argon2.PasswordHasher().verify(row["password_hash"], PASSWORD)


@pytest.mark.parametrize("second", ["alice", "ALICE", "Alice"])
async def test_register_username_taken_regardless_of_case(gateway: FakeGateway, second: str) -> None:
    await register(gateway, "alice")
    code = await error_code(gateway, wire.Register(
        ref="r2", username=second, email="other@example.com", password=PASSWORD,
    ))
    assert code == "username_taken"


@pytest.mark.parametrize("second", ["alice@example.com", "ALICE@Example.com"])
async def test_register_email_taken_regardless_of_case(
    gateway: FakeGateway, db: asyncpg.Connection, second: str
) -> None:
    await register(gateway, "alice", "alice@example.com")
    code = await error_code(gateway, wire.Register(username="bob", email=second, password=PASSWORD))
    assert code == "email_taken"
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_register_what_postgres_cannot_store_is_invalid(gateway: FakeGateway, db: asyncpg.Connection) -> None:
    # The wire format lets a NUL through; PostgreSQL text cannot hold one.
    code = await error_code(gateway, wire.Register(username="alice", email="a\x00b@example.com", password=PASSWORD))
    assert code == "invalid"
    assert await db.fetchval("SELECT count(*) FROM users") == 0


# --- login -------------------------------------------------------------------------------


async def test_login_issues_token_for_the_user_id(gateway: FakeGateway, settings: Settings) -> None:
    user = await register(gateway, "alice")
    reply, frame = await gateway.call(wire.Login(ref="in", username="alice", password=PASSWORD))
    assert isinstance(frame, wire.LoggedIn)
    assert frame.ref == "in"
    assert frame.user == wire.UserRef(id=user.id, username="alice")
    # The gateway binds the connection from this.
    assert reply.login == wire.UserRef(id=user.id, username="alice")
    token = claims(settings, frame.token)
    assert token["sub"] == str(user.id)
    assert isinstance(token["iat"], int) and isinstance(token["exp"], int)
    assert token["exp"] - token["iat"] == settings.token_ttl_seconds
    assert abs(token["iat"] - time.time()) < 60


async def test_login_username_is_case_insensitive(gateway: FakeGateway) -> None:
    user = await register(gateway, "Alice")
    frame = await login(gateway, "aLICE")
    assert frame.user == wire.UserRef(id=user.id, username="Alice")


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"), ("nobody", PASSWORD)])
async def test_login_bad_credentials(gateway: FakeGateway, username: str, password: str) -> None:
    await register(gateway, "alice")
    assert await error_code(gateway, wire.Login(ref="x", username=username, password=password)) == "bad_credentials"


async def test_login_rehashes_an_old_hash(gateway: FakeGateway, db: asyncpg.Connection) -> None:
    await register(gateway, "bob")  # the service is up and has created the table
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await db.execute(
        "INSERT INTO users (username, email, password_hash) VALUES ('old', 'old@example.com', $1)", weak
    )
    await login(gateway, "old")
    stored = await db.fetchval("SELECT password_hash FROM users WHERE username = 'old'")
    assert stored != weak
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    await login(gateway, "old")


async def test_many_concurrent_logins_all_succeed(gateway: FakeGateway) -> None:
    await register(gateway, "alice")
    conns = [await gateway.send(wire.Login(username="alice", password=PASSWORD)) for _ in range(16)]
    frames = [server_frame((await gateway.reply(conn, timeout=30)).frame) for conn in conns]
    assert all(isinstance(frame, wire.LoggedIn) for frame in frames), frames


# --- auth --------------------------------------------------------------------------------


async def test_auth_with_a_login_token(gateway: FakeGateway, settings: Settings) -> None:
    user = await register(gateway, "alice")
    token = (await login(gateway, "alice")).token
    reply, frame = await gateway.call(wire.Auth(ref="a", token=token))
    assert isinstance(frame, wire.LoggedIn)
    assert frame.ref == "a"
    assert frame.user == reply.login == wire.UserRef(id=user.id, username="alice")
    assert claims(settings, frame.token)["sub"] == str(user.id)


def _expired(settings: Settings, user_id: int) -> str:
    return Tokens(settings.secret, 60, clock=lambda: time.time() - 3600).issue(user_id, Session.new(time.time()))


def _wrong_secret(settings: Settings, user_id: int) -> str:
    return Tokens("some other secret entirely", 3600).issue(user_id, Session.new(time.time()))


def _no_subject(settings: Settings, user_id: int) -> str:
    return jwt.encode({"exp": int(time.time()) + 60}, signing_key(settings.secret), algorithm="HS256")


def _unsigned(settings: Settings, user_id: int) -> str:
    return jwt.encode({"sub": str(user_id), "exp": int(time.time()) + 60}, None, algorithm="none")


def _username_subject(settings: Settings, user_id: int) -> str:
    claims = {"sub": "alice", "exp": int(time.time()) + 60}
    return jwt.encode(claims, signing_key(settings.secret), algorithm="HS256")


def _garbage(settings: Settings, user_id: int) -> str:
    return "not.a.token"


@pytest.mark.parametrize("make", [_expired, _wrong_secret, _no_subject, _unsigned, _username_subject, _garbage])
async def test_auth_bad_token(gateway: FakeGateway, settings: Settings, make: object) -> None:
    user = await register(gateway, "alice")
    assert callable(make)
    token: str = make(settings, user.id)
    assert await error_code(gateway, wire.Auth(ref="t", token=token)) == "bad_token"


async def test_auth_expires_with_a_tiny_ttl(settings: Settings) -> None:
    short = settings.with_overrides(token_ttl_seconds=1)
    async with running(serve, short), FakeGateway.open(short.redis_url) as gateway:
        await register(gateway, "alice")
        token = (await login(gateway, "alice")).token
        expires = claims(short, token)["exp"]
        assert isinstance(expires, int)
        # Accepted until its expiry, refused as soon as it has passed (no leeway).
        await wait_until(lambda: time.time() > expires + 1, timeout=15, what="the token's expiry")
        assert await error_code(gateway, wire.Auth(token=token)) == "bad_token"


async def test_auth_for_a_deleted_user_is_bad_token(gateway: FakeGateway, db: asyncpg.Connection) -> None:
    await register(gateway, "alice")
    token = (await login(gateway, "alice")).token
    await db.execute("DELETE FROM users")
    assert await error_code(gateway, wire.Auth(token=token)) == "bad_token"


# --- rename ------------------------------------------------------------------------------


async def test_rename_replies_and_tells_the_other_connections(gateway: FakeGateway) -> None:
    user = await register(gateway, "alice")
    await gateway.watch_user(user.id)
    me = wire.UserRef(id=user.id, username="alice")
    conn = gateway.new_conn()
    reply, frame = await gateway.call(wire.Rename(ref="rn", username="alicia"), user=me, conn=conn)
    renamed = wire.UserRef(id=user.id, username="alicia")
    assert isinstance(frame, wire.Renamed)
    assert frame.ref == "rn" and frame.user == renamed
    assert reply.identity == renamed and reply.login is None
    event = await gateway.user_event(user.id)
    assert event.skip_conn == conn
    assert event.identity == renamed
    pushed = server_frame(event.frame)
    assert isinstance(pushed, wire.Renamed) and pushed.user == renamed
    # The push is not a reply to anything the other connections asked.
    assert pushed.ref is None


async def test_rename_to_a_taken_name_regardless_of_case(gateway: FakeGateway, db: asyncpg.Connection) -> None:
    await register(gateway, "alice")
    bob = await register(gateway, "bob")
    me = wire.UserRef(id=bob.id, username="bob")
    assert await error_code(gateway, wire.Rename(username="ALICE"), user=me) == "username_taken"
    assert await db.fetchval("SELECT username FROM users WHERE id = $1", bob.id) == "bob"


async def test_rename_to_another_case_of_ones_own_name(gateway: FakeGateway) -> None:
    user = await register(gateway, "alice")
    _, frame = await gateway.call(wire.Rename(username="Alice"), user=wire.UserRef(id=user.id, username="alice"))
    assert isinstance(frame, wire.Renamed) and frame.user.username == "Alice"


async def test_rename_needs_a_login(gateway: FakeGateway) -> None:
    assert await error_code(gateway, wire.Rename(username="alicia")) == "unauthenticated"


async def test_after_rename_the_new_name_logs_in_and_the_old_does_not(gateway: FakeGateway) -> None:
    user = await register(gateway, "alice")
    await gateway.call(wire.Rename(username="alicia"), user=wire.UserRef(id=user.id, username="alice"))
    assert (await login(gateway, "alicia")).user == wire.UserRef(id=user.id, username="alicia")
    assert await error_code(gateway, wire.Login(username="alice", password=PASSWORD)) == "bad_credentials"
    # The old name is free for someone else.
    await register(gateway, "alice", "another@example.com")


# --- running -----------------------------------------------------------------------------


async def test_refuses_to_start_without_a_secret(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="CHAT_SECRET"):
        await serve(settings.with_overrides(secret=""))


async def test_starts_and_stops_cleanly_again_and_again(settings: Settings) -> None:
    before = asyncio.all_tasks()
    for n in range(3):
        async with running(serve, settings) as task, FakeGateway.open(settings.redis_url) as gateway:
            await register(gateway, f"user{n}")
            assert not task.done()
    assert asyncio.all_tasks() == before


async def test_postgres_outage_answers_unavailable_and_recovers(settings: Settings) -> None:
    proxy = TcpProxy.for_url(settings.database_url)
    await proxy.start()
    proxied = settings.with_overrides(database_url=proxy.url(settings.database_url))
    try:
        async with running(serve, proxied) as task, FakeGateway.open(settings.redis_url) as gateway:
            await register(gateway, "alice")
            await proxy.stop()
            assert await error_code(gateway, wire.Login(username="alice", password=PASSWORD)) == "unavailable"
            assert not task.done()
            await proxy.start()
            await login(gateway, "alice")
    finally:
        await proxy.stop()


async def test_undecodable_entry_does_not_stop_the_service(gateway: FakeGateway) -> None:
    await gateway.redis.xadd(layout.AUTH_REQUESTS[0], {b"e": msgspec.json.encode({"nonsense": True})})
    await register(gateway, "alice")
