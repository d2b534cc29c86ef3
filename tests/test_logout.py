"""Sessions and `logout` through real gateways: a logged-out token is refused on every gateway,
the session's other connections are closed with 4001, other sessions live on unless the logout
was `everywhere`. And unknown user and wrong password are one answer."""

from __future__ import annotations

import asyncio

import jwt
import pytest
import redis.asyncio

from chat_client import ChatClient
from chatkit import keys
from gateway.connections import CLOSE_LOGGED_OUT
from tests.support.stack import Stack
from tests.support.users import PASSWORD, device, new_user


async def closed_with(client: ChatClient) -> int | None:
    await asyncio.wait_for(client.ws.wait_closed(), 10)
    return client.ws.close_code


async def test_logout_ends_the_session_on_every_gateway(stack: Stack, rds: redis.asyncio.Redis) -> None:
    phone = await new_user(stack, "alice", gateway=0)
    assert phone.token is not None
    token = phone.token
    # The same session on the other gateway (auth with the token), and another session.
    same = await stack.client(1)
    await same.auth(token)
    other = await device(stack, "alice", gateway=1)
    assert other.token is not None

    reply = await phone.call({"type": "logout"})
    assert reply == {"type": "logged_out", "ref": reply["ref"]}
    # The session's other connection is told, then closed with the documented code.
    assert (await same.next_push())["type"] == "logged_out"
    assert await closed_with(same) == CLOSE_LOGGED_OUT
    # The connection that logged out stays open, logged out.
    assert (await phone.request({"type": "dialogs"}))["code"] == "unauthenticated"
    # Its token is refused everywhere (the session's end is in Redis: auth_service/sessions.py).
    for gateway in (0, 1):
        fresh = await stack.client(gateway)
        assert (await fresh.request({"type": "auth", "token": token}))["code"] == "bad_token"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert await rds.hexists(keys.revoked_sessions(int(claims["sub"])), claims["sid"])
    assert not await rds.hexists(keys.revoked_sessions(int(claims["sub"])), "*")
    # Another session of the same user goes on.
    assert (await other.request({"type": "dialogs"}))["type"] == "dialogs"
    again = await stack.client(0)
    assert (await again.request({"type": "auth", "token": other.token}))["type"] == "logged_in"


async def test_logout_everywhere_ends_every_session_of_the_user(stack: Stack) -> None:
    phone = await new_user(stack, "alice", gateway=0)
    laptop = await device(stack, "alice", gateway=1)
    tablet = await device(stack, "alice", gateway=0)
    bob = await new_user(stack, "bob", gateway=1)
    tokens = [c.token for c in (phone, laptop, tablet)]

    await phone.call({"type": "logout", "everywhere": True})
    for client in (laptop, tablet):
        assert await closed_with(client) == CLOSE_LOGGED_OUT
    for token in tokens:
        fresh = await stack.client(1)
        assert (await fresh.request({"type": "auth", "token": token}))["code"] == "bad_token"
    # Someone else is untouched; a new login of alice is a new session, and works.
    assert (await bob.request({"type": "dialogs"}))["type"] == "dialogs"
    back = await device(stack, "alice", gateway=1)
    assert back.token is not None
    fresh = await stack.client(0)
    assert (await fresh.request({"type": "auth", "token": back.token}))["type"] == "logged_in"


async def test_logout_needs_a_login(stack: Stack) -> None:
    anonymous = await stack.client(0)
    assert (await anonymous.request({"type": "logout"}))["code"] == "unauthenticated"


@pytest.mark.parametrize("username", ["nobody_here", "alice"])
async def test_unknown_user_and_wrong_password_get_the_same_answer(stack: Stack, username: str) -> None:
    await new_user(stack, "alice")
    client = await stack.client(1)
    reply = await client.request({"type": "login", "username": username, "password": "not " + PASSWORD})
    assert reply == {"type": "error", "ref": reply["ref"], "code": "bad_credentials",
                     "message": "wrong username or password"}
