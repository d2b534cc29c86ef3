"""Login tokens: HS256 JWTs whose subject is the user id (ids never change; names do), with the
session they belong to (`sid`, and `sst`: when it started, in ms)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from chatkit.settings import SettingsError

ALGORITHM = "HS256"
# Domain separation: the signing key is derived from the shared secret for this one use, so
# the same CHAT_SECRET could key something else without tokens being valid there. It also
# makes the key exactly 32 bytes, the RFC 7518 minimum for HS256, whatever the secret's length.
_KEY_LABEL = b"chat-backend login token v1"


class BadToken(Exception):
    """A token that is malformed, wrongly signed, expired or lacks a user id."""


def signing_key(secret: str) -> bytes:
    if not secret:
        raise SettingsError(
            "CHAT_SECRET is empty: set it to a long random string, the same on every auth_service replica"
            " (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Session:
    """One login: every token refreshed from it (`auth`) carries the same id and start, so a
    `logout` ends them all (auth_service/sessions.py)."""

    id: str
    started_ms: int

    @classmethod
    def new(cls, now: float) -> Session:
        return cls(id=secrets.token_urlsafe(12), started_ms=int(now * 1000))


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    session: Session


class Tokens:
    def __init__(self, secret: str, ttl_seconds: int, *, clock: Callable[[], float] = time.time) -> None:
        self._key = signing_key(secret)
        self._ttl = ttl_seconds
        self._clock = clock

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def new_session(self) -> Session:
        return Session.new(self._clock())

    def issue(self, user_id: int, session: Session) -> str:
        now = int(self._clock())
        claims = {"sub": str(user_id), "sid": session.id, "sst": session.started_ms, "iat": now, "exp": now + self._ttl}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        """The user and session a valid token names; :class:`BadToken` otherwise."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "sid", "sst"]},
            )
            user_id = int(claims["sub"])
            session = Session(id=str(claims["sid"]), started_ms=int(claims["sst"]))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise BadToken(str(exc)) from exc
        # Ids are PostgreSQL `serial`s; anything else would fail the lookup as a bad query.
        if not 0 < user_id < 2**31:
            raise BadToken(f"subject {user_id} is not a user id")
        if not session.id or len(session.id) > 64:
            raise BadToken("the session id is empty or too long")
        return Claims(user_id=user_id, session=session)

    def user_id(self, token: str) -> int:
        """The user id a valid token names; :class:`BadToken` otherwise."""
        return self.verify(token).user_id
