"""Login tokens: what they carry, and every way one is refused."""

from __future__ import annotations

import time

import jwt
import pytest

from auth_service.tokens import BadToken, Session, Tokens, signing_key
from chatkit.settings import SettingsError

SECRET = "a secret that is only for these tests"
SESSION = Session(id="s1", started_ms=999_000_000_000)


def test_token_names_the_user_id_and_session_and_expires_after_the_ttl() -> None:
    tokens = Tokens(SECRET, 600, clock=lambda: 1_000_000_000.0)
    token = tokens.issue(42, SESSION)
    claims = jwt.decode(token, signing_key(SECRET), algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "42", "sid": "s1", "sst": 999_000_000_000, "iat": 1_000_000_000, "exp": 1_000_000_600}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_fresh_token_is_accepted() -> None:
    tokens = Tokens(SECRET, 600)
    assert tokens.user_id(tokens.issue(7, SESSION)) == 7
    assert tokens.verify(tokens.issue(7, SESSION)).session == SESSION


def test_expired_token_is_refused() -> None:
    old = Tokens(SECRET, 60, clock=lambda: time.time() - 61).issue(7, SESSION)
    with pytest.raises(BadToken):
        Tokens(SECRET, 60).user_id(old)


def test_token_of_another_secret_is_refused() -> None:
    with pytest.raises(BadToken):
        Tokens(SECRET, 60).user_id(Tokens(SECRET + "!", 60).issue(7, SESSION))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 2**40, "sid": "s", "sst": 1},  # no subject
        {"sub": "7", "sid": "s", "sst": 1},  # no expiry
        {"sub": "7", "exp": 2**40, "sst": 1},  # no session
        {"sub": "7", "exp": 2**40, "sid": "s"},  # no session start
        {"sub": "7", "exp": 2**40, "sid": "", "sst": 1},
        {"sub": "7", "exp": 2**40, "sid": "s", "sst": "soon"},
        {"sub": "seven", "exp": 2**40, "sid": "s", "sst": 1},
        {"sub": "0", "exp": 2**40, "sid": "s", "sst": 1},
        {"sub": str(2**31), "exp": 2**40, "sid": "s", "sst": 1},
    ],
)
def test_token_without_a_valid_subject_session_or_expiry_is_refused(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, signing_key(SECRET), algorithm="HS256")
    with pytest.raises(BadToken):
        Tokens(SECRET, 60).user_id(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", jwt.encode({"sub": "7", "exp": 2**40}, None, "none")])
def test_malformed_or_unsigned_token_is_refused(token: str) -> None:
    with pytest.raises(BadToken):
        Tokens(SECRET, 60).user_id(token)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="CHAT_SECRET"):
        Tokens("", 60)


def test_signing_key_is_the_hs256_minimum_length_whatever_the_secret() -> None:
    assert len(signing_key("x")) == len(signing_key("y" * 1000)) == 32
    assert signing_key("x") != signing_key("y")
