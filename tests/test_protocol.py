"""Wire protocol v1 through real gateways: frame handling at the gateway (bad_frame,
unknown_type, ref, unauthenticated) and the account frames (register, login, auth, rename).
Dialogs are in test_dialogs, messages and history in test_messages."""

from __future__ import annotations

import time

import jwt
import pytest

from auth_service.tokens import Tokens
from chat_client.client import Frame
from chatkit.wire import ANONYMOUS_FRAME_TYPES, CLIENT_FRAME_TYPES
from tests.support.dialogs import id_of
from tests.support.protocol import assert_alive, expect_error, expect_push_error
from tests.support.stack import Stack
from tests.support.users import PASSWORD, device, new_user, uid

# A valid frame of each type that needs a logged-in connection.
SOME_DIALOG = id_of(1, 2)
AUTHENTICATED_FRAMES: dict[str, Frame] = {
    "rename": {"type": "rename", "username": "someone"},
    "open_dialog": {"type": "open_dialog", "username": "someone"},
    "dialogs": {"type": "dialogs"},
    "send": {"type": "send", "dialog_id": SOME_DIALOG, "text": "hi", "client_msg_id": "c1"},
    "history": {"type": "history", "dialog_id": SOME_DIALOG},
    "sync": {"type": "sync", "dialogs": {SOME_DIALOG: 0}},
}


# --- gateway-level frame handling ----------------------------------------------------------


async def test_bad_frames_get_bad_frame_and_the_connection_stays_open(stack: Stack) -> None:
    anonymous = await stack.client(0)
    alice = await new_user(stack, "alice", gateway=1)
    for client in (anonymous, alice):
        reply = await expect_push_error(client, "{not json", "bad_frame")
        assert "JSON" in reply["message"]
        reply = await expect_push_error(client, '[{"type": "dialogs"}]', "bad_frame")
        assert "object" in reply["message"]
        await expect_push_error(client, '"dialogs"', "bad_frame")
        await expect_push_error(client, b'{"type": "dialogs"}', "bad_frame")
        await expect_push_error(client, '{"kind": "dialogs"}', "bad_frame")
        await expect_push_error(client, '{"type": 7}', "bad_frame")


async def test_unknown_type_names_the_expected_types_and_what_came(stack: Stack) -> None:
    anonymous = await stack.client(0)
    alice = await new_user(stack, "alice", gateway=1)
    for client in (anonymous, alice):
        reply = await expect_error(client, {"type": "frobnicate"}, "unknown_type")
        assert "frobnicate" in reply["message"]
        for kind in CLIENT_FRAME_TYPES:
            assert repr(kind) in reply["message"] or kind in reply["message"]


async def test_ref_is_echoed_on_replies_and_errors(stack: Stack) -> None:
    alice = await stack.client(0)
    await alice.send_raw('{"type":"register","username":"alice","email":"a@example.org",'
                         f'"password":"{PASSWORD}","ref":"{"x" * 64}"}}')
    reply = await alice.next_push()
    assert reply["type"] == "registered" and reply["ref"] == "x" * 64
    await alice.send_raw('{"type":"login","username":"alice","password":"wrong-password","ref":"my ref"}')
    reply = await alice.next_push()
    assert reply == {"type": "error", "ref": "my ref", "code": "bad_credentials", "message": reply["message"]}
    # A frame that fails validation still echoes a usable ref.
    await alice.send_raw('{"type":"login","username":"alice","ref":"half"}')
    reply = await alice.next_push()
    assert reply["type"] == "error" and reply["code"] == "invalid" and reply["ref"] == "half"
    await alice.send_raw('{"ref":"typeless"}')
    reply = await alice.next_push()
    assert reply["type"] == "error" and reply["code"] == "bad_frame" and reply["ref"] == "typeless"
    # Without a ref, the reply has none.
    await alice.send_raw(f'{{"type":"login","username":"alice","password":"{PASSWORD}"}}')
    reply = await alice.next_push()
    assert reply["type"] == "logged_in" and "ref" not in reply


async def test_ref_longer_than_64_is_invalid(stack: Stack) -> None:
    for client in (await stack.client(0), await new_user(stack, "alice", gateway=1)):
        reply = await expect_push_error(client, f'{{"type":"dialogs","ref":"{"x" * 65}"}}', "invalid")
        assert "ref" in reply["message"]
        await expect_push_error(client, '{"type":"dialogs","ref":5}', "invalid")


@pytest.mark.parametrize("kind", sorted(AUTHENTICATED_FRAMES))
async def test_everything_but_register_login_auth_needs_login(stack: Stack, kind: str) -> None:
    assert set(AUTHENTICATED_FRAMES) == set(CLIENT_FRAME_TYPES) - ANONYMOUS_FRAME_TYPES
    client = await stack.client(0)
    reply = await expect_error(client, AUTHENTICATED_FRAMES[kind], "unauthenticated")
    assert kind in reply["message"]
    # Still anonymous: logging in afterwards works.
    await client.register("alice", "alice@example.org", PASSWORD)
    await client.login("alice", PASSWORD)
    await assert_alive(client)


# --- register ------------------------------------------------------------------------------


async def test_register_replies_registered_and_does_not_log_in(stack: Stack) -> None:
    client = await stack.client(0)
    reply = await client.request(
        {"type": "register", "username": "alice", "email": "alice@example.org", "password": PASSWORD}
    )
    assert reply == {
        "type": "registered", "ref": reply["ref"],
        "user": {"id": reply["user"]["id"], "username": "alice", "email": "alice@example.org"},
    }
    assert isinstance(reply["user"]["id"], int)
    await expect_error(client, {"type": "dialogs"}, "unauthenticated")


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"username": "al", "email": "al@example.org", "password": PASSWORD}, "username"),
        ({"username": "a" * 33, "email": "a@example.org", "password": PASSWORD}, "username"),
        ({"username": "al ice", "email": "al@example.org", "password": PASSWORD}, "username"),
        ({"username": "alice", "email": "not-an-address", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "alice@example.org", "password": "short"}, "password"),
        ({"username": "alice", "email": "alice@example.org"}, "password"),
        ({"username": 5, "email": "alice@example.org", "password": PASSWORD}, "username"),
    ],
)
async def test_register_invalid_names_the_field(stack: Stack, frame: dict[str, object], field: str) -> None:
    client = await stack.client(0)
    reply = await expect_error(client, {"type": "register", **frame}, "invalid")
    assert field in reply["message"]


async def test_register_taken_username_and_email(stack: Stack) -> None:
    client = await stack.client(0)
    await client.register("alice", "alice@example.org", PASSWORD)
    frame = {"type": "register", "password": PASSWORD}
    await expect_error(client, {**frame, "username": "alice", "email": "other@example.org"}, "username_taken")
    await expect_error(client, {**frame, "username": "ALICE", "email": "other@example.org"}, "username_taken")
    await expect_error(client, {**frame, "username": "alice2", "email": "alice@example.org"}, "email_taken")
    await expect_error(client, {**frame, "username": "alice2", "email": "Alice@Example.org"}, "email_taken")
    # Neither attempt left anything behind: the free name and address still register.
    assert (await client.register("alice2", "alice2@example.org", PASSWORD))["username"] == "alice2"


# --- login and auth ------------------------------------------------------------------------


async def test_login_replies_logged_in_and_binds_the_connection(stack: Stack) -> None:
    client = await stack.client(0)
    user = await client.register("alice", "alice@example.org", PASSWORD)
    reply = await client.request({"type": "login", "username": "alice", "password": PASSWORD})
    assert reply == {
        "type": "logged_in", "ref": reply["ref"], "token": reply["token"],
        "user": {"id": user["id"], "username": "alice"},
    }
    assert isinstance(reply["token"], str) and reply["token"]
    assert (await client.request({"type": "dialogs"}))["type"] == "dialogs"


async def test_login_bad_credentials(stack: Stack) -> None:
    client = await stack.client(0)
    await client.register("alice", "alice@example.org", PASSWORD)
    wrong_password = await expect_error(
        client, {"type": "login", "username": "alice", "password": "wrong password"}, "bad_credentials"
    )
    no_such_user = await expect_error(
        client, {"type": "login", "username": "mallory", "password": PASSWORD}, "bad_credentials"
    )
    # One answer for both, so the reply does not tell which names exist.
    assert wrong_password["message"] == no_such_user["message"]
    await expect_error(client, {"type": "dialogs"}, "unauthenticated")
    await client.login("alice", PASSWORD)


async def test_token_from_login_works_with_auth_on_another_gateway(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    assert alice.token is not None
    other = await stack.client(1)
    reply = await other.request({"type": "auth", "token": alice.token})
    assert reply == {
        "type": "logged_in", "ref": reply["ref"], "token": reply["token"],
        "user": {"id": uid(alice), "username": "alice"},
    }
    other.user = reply["user"]
    await assert_alive(other)


async def test_auth_replies_with_a_fresh_token(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    # A token issued an hour ago, still valid: the reply to `auth` must not just echo it.
    settings = stack.settings
    old = Tokens(settings.secret, settings.token_ttl_seconds, clock=lambda: time.time() - 3600).issue(uid(alice))
    client = await stack.client(1)
    asked_at = int(time.time())
    reply = await client.call({"type": "auth", "token": old})
    fresh = reply["token"]
    assert isinstance(fresh, str) and fresh != old
    claims = jwt.decode(fresh, options={"verify_signature": False})
    assert claims["sub"] == str(uid(alice))
    assert claims["iat"] >= asked_at, claims
    # And it works, on another connection.
    again = await stack.client(0)
    assert (await again.auth(fresh))["user"] == {"id": uid(alice), "username": "alice"}


async def test_auth_bad_token(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    assert alice.token is not None
    client = await stack.client(1)
    for token in ("", "garbage", alice.token[:-4] + "AAAA", alice.token + "x"):
        await expect_error(client, {"type": "auth", "token": token}, "bad_token")
    await expect_error(client, {"type": "dialogs"}, "unauthenticated")
    await client.auth(alice.token)
    await assert_alive(client)


# --- rename --------------------------------------------------------------------------------


async def test_rename_replies_renamed(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    reply = await alice.request({"type": "rename", "username": "alicia"})
    assert reply == {"type": "renamed", "ref": reply["ref"], "user": {"id": uid(alice), "username": "alicia"}}
    relogin = await stack.client(1)
    await relogin.login("alicia", PASSWORD)
    assert relogin.user == {"id": uid(alice), "username": "alicia"}
    await expect_error(relogin, {"type": "login", "username": "alice", "password": PASSWORD}, "bad_credentials")


async def test_rename_invalid_and_taken(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    await new_user(stack, "bob", gateway=1)
    for bad in ("al", "a" * 33, "al ice", "al/ice"):
        reply = await expect_error(alice, {"type": "rename", "username": bad}, "invalid")
        assert "username" in reply["message"]
    await expect_error(alice, {"type": "rename", "username": "bob"}, "username_taken")
    await expect_error(alice, {"type": "rename", "username": "BOB"}, "username_taken")
    # Another case of one's own name is not taken.
    reply = await alice.call({"type": "rename", "username": "Alice"})
    assert reply["user"]["username"] == "Alice"


async def test_rename_reaches_the_users_other_devices(stack: Stack) -> None:
    alice = await new_user(stack, "alice", gateway=0)
    phone = await device(stack, "alice", gateway=1)
    await alice.call({"type": "rename", "username": "alicia"})
    assert await phone.next_push() == {"type": "renamed", "user": {"id": uid(alice), "username": "alicia"}}
    # The renaming connection got its reply, not the push: the first push it sees is the one
    # for a rename from the phone, made after (a user's pushes come in order).
    await phone.call({"type": "rename", "username": "alicia2"})
    assert await alice.next_push() == {"type": "renamed", "user": {"id": uid(alice), "username": "alicia2"}}

