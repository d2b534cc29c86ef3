"""Every limit on abuse (SECURITY.md) through real gateways, with small limits set through
Settings: each answers `rate_limited` with `retry_after_ms`, and the request goes through once
the client waited that long. Unit tests of the pure parts (gateway/limits.py) first."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
import websockets
from websockets.exceptions import InvalidStatus

from chat_client import ChatClient
from chat_client.client import Frame
from chatkit import keys, ratelimit
from chatkit.ratelimit import Bucket
from chatkit.settings import Settings
from gateway.limits import CLOSE_TOO_MANY_REQUESTS, Leases, Policy, TokenBucket, parse_networks, parse_origins
from tests.support.stack import Stack, start_stack
from tests.support.users import PASSWORD

_names = itertools.count(1)

# --- pure ----------------------------------------------------------------------------------


def test_token_bucket_refuses_when_empty_and_says_when_a_token_is_back() -> None:
    bucket = TokenBucket(2, now=0.0)
    assert bucket.take(2, 1.0, now=0.0) == 0.0
    assert bucket.take(2, 1.0, now=0.0) == 0.0
    assert bucket.take(2, 1.0, now=0.0) == pytest.approx(0.5)
    assert bucket.take(2, 1.0, now=0.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert bucket.take(2, 1.0, now=0.5) == 0.0
    assert bucket.take(2, 1.0, now=100.0) == 0.0 and bucket.tokens == pytest.approx(1)  # capped at capacity


def test_leases_are_spent_locally_and_expire_after_one_window() -> None:
    leases = Leases(window=1.0)
    assert not leases.take(7, now=0.0)
    leases.granted(7, 3, now=0.0)  # one of the three went to the request that asked
    assert leases.take(7, now=0.1) and leases.take(7, now=0.2)
    assert not leases.take(7, now=0.3)
    leases.granted(7, 5, now=1.0)
    assert not leases.take(7, now=2.0)  # unspent tokens are not kept past the window
    assert not leases.take(8, now=1.1)
    leases.drop(7)
    assert len(leases) == 0


async def test_lease_script_grants_what_the_shared_bucket_holds_then_says_how_long_to_wait(
    rds: redis.asyncio.Redis,
) -> None:
    bucket = Bucket(keys.limit_bucket("messages", 1), capacity=5, window_ms=1000)
    numkeys, *lease = ratelimit.lease(bucket, want=3)
    assert numkeys == 1
    sha = await rds.script_load(ratelimit.LEASE_SCRIPT)
    assert sha == ratelimit.LEASE_SHA
    granted = [await rds.evalsha(sha, 1, *lease) for _ in range(3)]
    assert granted[0] == [3, 0]
    assert granted[1][0] in (1, 2) and granted[1][1] == 0  # two left, perhaps refilled a little
    assert granted[2][0] == 0 and 0 < granted[2][1] <= 200  # 5 per second: one every 200 ms
    assert 0 < await rds.pttl(bucket.key) <= 1000


def _policy(**overrides: object) -> Policy:
    return Policy.of(Settings().with_overrides(**overrides))


def test_origins_any_by_default_else_only_those_listed_and_no_header_always_passes() -> None:
    assert parse_origins("*") is None and parse_origins("") is None
    assert _policy().origin_allowed("https://anything.example")
    policy = _policy(allowed_origins="https://chat.example.org/, http://localhost:8080")
    assert policy.origin_allowed("https://chat.example.org")
    assert policy.origin_allowed("HTTP://LOCALHOST:8080")
    assert not policy.origin_allowed("https://chat.example.org.evil.example")
    assert not policy.origin_allowed("null")
    assert policy.origin_allowed(None)


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    policy = _policy(trusted_proxies="10.0.0.0/8, ::1")
    assert policy.client_address("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    assert policy.client_address("10.1.2.3", "198.51.100.1") == "198.51.100.1"
    # The nearest hop that is not a trusted proxy: what the client wrote before it is not believed.
    assert policy.client_address("10.1.2.3", "1.1.1.1, 198.51.100.1, 10.9.9.9") == "198.51.100.1"
    assert policy.client_address("::1", None) == "::1"
    assert policy.client_address(None, "198.51.100.1") == "unknown"
    with pytest.raises(ValueError, match="CHAT_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/8, proxy.internal")


# --- through the gateways -------------------------------------------------------------------

Limited = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Limited]:
    """Start the stack with some limits made small; stopped after the test."""
    stacks: list[Stack] = []

    async def start(**limits: object) -> Stack:
        stack = await start_stack(settings.with_overrides(**limits))
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        await stack.stop()


def name() -> str:
    return f"user{next(_names)}"


async def user(stack: Stack, username: str, gateway: int = 0, *, register: bool = True) -> ChatClient:
    client = await stack.client(gateway)
    if register:
        await client.register(username, f"{username}@example.org", PASSWORD)
    await until_accepted(client, {"type": "login", "username": username, "password": PASSWORD})
    return client


def assert_rate_limited(reply: Frame) -> int:
    assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
    assert set(reply) == {"type", "ref", "code", "message", "retry_after_ms"}, reply
    wait = reply["retry_after_ms"]
    assert isinstance(wait, int) and wait > 0, reply
    assert "too many" in reply["message"] and str(wait) in reply["message"], reply
    return wait


async def until_accepted(client: ChatClient, frame: Frame, *, attempts: int = 20) -> Frame:
    """Send ``frame`` until it is not refused, waiting as long as each refusal says."""
    for _ in range(attempts):
        reply = await client.request(frame)
        if reply.get("code") != "rate_limited":
            assert reply["type"] != "error", reply
            return reply
        await asyncio.sleep(assert_rate_limited(reply) / 1000)
    raise AssertionError(f"{frame['type']} still refused after {attempts} waits")


def send_frame(dialog_id: str, n: int) -> Frame:
    return {"type": "send", "dialog_id": dialog_id, "text": f"m{n}", "client_msg_id": f"c{n}-{next(_names)}"}


async def test_messages_per_user_are_counted_over_all_connections_on_every_gateway(limited: Limited) -> None:
    stack = await limited(user_messages_per_second=4)
    alice, bob = name(), name()
    phone = await user(stack, alice, gateway=0)
    await user(stack, bob, gateway=1)
    laptop = await user(stack, alice, gateway=1, register=False)
    dialog_id = (await phone.open_dialog(bob))["id"]
    # Sent at once from two connections on two gateways: together they get four.
    replies = await asyncio.gather(*(
        device.request(send_frame(dialog_id, n)) for n in range(6) for device in (phone, laptop)
    ))
    accepted = [r for r in replies if r["type"] == "sent"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(accepted) <= 4 + 1, replies  # the bucket may refill one token while they go out
    assert len(refused) >= 12 - 5
    for reply in refused:
        assert_rate_limited(reply)
    assert await until_accepted(laptop, send_frame(dialog_id, 99))


async def test_requests_per_connection_are_counted_by_the_gateway(limited: Limited) -> None:
    stack = await limited(connection_requests_per_second=3)
    alice = await user(stack, name())
    other = await user(stack, name())  # another connection has its own count
    replies = await asyncio.gather(*(alice.request({"type": "dialogs"}) for _ in range(8)))
    refused = [r for r in replies if r["type"] == "error"]
    assert 8 - len(refused) <= 3 + 1 and refused, replies
    for reply in refused:
        assert_rate_limited(reply)
        assert "connection" in reply["message"]
    assert (await other.request({"type": "dialogs"}))["type"] == "dialogs"
    assert (await until_accepted(alice, {"type": "dialogs"}))["type"] == "dialogs"


async def test_refusals_that_go_on_close_the_connection_with_4029(limited: Limited) -> None:
    stack = await limited(connection_requests_per_second=2, rate_limit_strikes=5)
    client = await stack.client(0)
    with contextlib.suppress(websockets.ConnectionClosed):
        for _ in range(20):
            await client.ws.send('{"type":"dialogs"}')
    await asyncio.wait_for(client.ws.wait_closed(), 10)
    assert client.ws.close_code == CLOSE_TOO_MANY_REQUESTS


async def test_login_attempts_per_username_on_every_gateway(limited: Limited) -> None:
    stack = await limited(login_attempts_per_minute=6)
    target = name()
    owner = await user(stack, target)  # register and login: two attempts
    attackers = [await stack.client(0), await stack.client(1)]
    wrong = {"type": "login", "username": target.upper(), "password": "wrong password"}
    replies = [await attackers[n % 2].request(wrong) for n in range(6)]
    codes = [r["code"] for r in replies]
    assert codes[:4] == ["bad_credentials"] * 4, codes
    assert "rate_limited" in codes[4:], codes
    for reply in replies[4:]:
        if reply["code"] == "rate_limited":
            assert_rate_limited(reply)
    # Another name from the same place is not affected; the right password waits like any.
    assert (await attackers[0].request({**wrong, "username": name()}))["code"] == "bad_credentials"
    right = {"type": "login", "username": target, "password": PASSWORD}
    assert (await until_accepted(owner, right))["type"] == "logged_in"


async def test_login_attempts_per_client_address_with_forwarded_for_from_a_trusted_proxy(
    limited: Limited,
) -> None:
    stack = await limited(login_attempts_per_address_per_minute=3, trusted_proxies="127.0.0.1")
    url = stack.gateway_urls[0]

    async def from_address(address: str) -> ChatClient:
        client = await ChatClient.connect(url, additional_headers={"X-Forwarded-For": address})
        stack.clients.append(client)
        return client

    first = await from_address("198.51.100.1")
    attempts = [{"type": "login", "username": name(), "password": "wrong password"} for _ in range(4)]
    codes = [(await first.request(frame))["code"] for frame in attempts]
    assert codes[:3] == ["bad_credentials"] * 3 and codes[3] == "rate_limited", codes
    second = await from_address("198.51.100.2")  # another client behind the same proxy
    assert (await second.request(attempts[0]))["code"] == "bad_credentials"
    assert (await until_accepted(first, {"type": "register", "username": name(), "email": "a@example.org",
                                         "password": PASSWORD}))["type"] == "registered"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(limited: Limited) -> None:
    stack = await limited(login_attempts_per_address_per_minute=2)  # no trusted proxies
    url = stack.gateway_urls[0]
    codes = []
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        client = await ChatClient.connect(url, additional_headers={"X-Forwarded-For": address})
        stack.clients.append(client)
        codes.append((await client.request({"type": "login", "username": name(), "password": "wrong"}))["code"])
    assert codes == ["bad_credentials", "bad_credentials", "rate_limited"], codes


async def test_dialogs_opened_per_user_per_minute(limited: Limited) -> None:
    stack = await limited(dialogs_opened_per_minute=6)
    peers = [name() for _ in range(7)]
    for peer in peers:
        await (await stack.client(1)).register(peer, f"{peer}@example.org", PASSWORD)
    alice = await user(stack, name())
    opened = [await alice.request({"type": "open_dialog", "username": peer}) for peer in peers]
    assert [r["type"] for r in opened[:6]] == ["dialog"] * 6, opened
    assert_rate_limited(opened[6])
    assert "dialogs" in opened[6]["message"]
    assert (await until_accepted(alice, {"type": "open_dialog", "username": peers[6]}))["type"] == "dialog"


async def test_connections_per_user_on_a_gateway(limited: Limited) -> None:
    stack = await limited(connections_per_user=2)
    alice = name()
    first = await user(stack, alice)
    await user(stack, alice, register=False)
    third = await stack.client(0)
    login = {"type": "login", "username": alice, "password": PASSWORD}
    assert_rate_limited(await third.request(login))
    assert (await third.request({"type": "dialogs"}))["code"] == "unauthenticated"
    elsewhere = await stack.client(1)  # counted per gateway
    assert (await elsewhere.request(login))["type"] == "logged_in"
    await first.close()
    assert (await until_accepted(third, login))["type"] == "logged_in"
    assert (await third.request({"type": "dialogs"}))["type"] == "dialogs"


async def test_connections_per_gateway_over_the_cap_get_http_503(limited: Limited) -> None:
    stack = await limited(connections_per_gateway=2)
    url = stack.gateway_urls[0]
    first, _second = await stack.client(0), await stack.client(0)
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 503
    assert (await stack.client(1)).ws.state is websockets.State.OPEN  # the other gateway has room
    await first.close()
    for _ in range(200):  # the gateway frees the slot once it has seen the close
        try:
            client = await ChatClient.connect(url)
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            await asyncio.sleep(0.05)
            continue
        stack.clients.append(client)
        assert (await client.request({"type": "dialogs"}))["code"] == "unauthenticated"
        return
    raise AssertionError("the gateway never took a connection again after one closed")


async def test_origin_checked_on_the_upgrade(limited: Limited) -> None:
    stack = await limited(allowed_origins="https://chat.example.org")
    url = stack.gateway_urls[1]
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin=websockets.Origin("https://evil.example"))
    assert refused.value.response.status_code == 403
    for origin in (websockets.Origin("https://chat.example.org"), None):  # None: not a browser
        client = await ChatClient.connect(url, origin=origin)
        stack.clients.append(client)
        assert (await client.request({"type": "dialogs"}))["code"] == "unauthenticated"
