"""Ended sessions, in Redis, so that every auth_service replica refuses their tokens on `auth`
without asking the database: one hash per user (chatkit.keys.revoked_sessions) holding each
ended session's id, and under "*" the moment (ms) at or before which every session of the user
started is over (`logout` with `everywhere`). The hash lives as long as a token does: a token
of an ended session has expired by the time the record of its end goes."""

from __future__ import annotations

import time
from collections.abc import Callable

from auth_service.tokens import Session
from chatkit import keys
from chatkit.errors import RequestError
from chatkit.redis import RedisClient

EVERY_SESSION = "*"
# Kept a minute past a token's lifetime: an `auth` racing the logout may refresh a token just before.
_MARGIN_MS = 60_000


class Sessions:
    def __init__(self, redis: RedisClient, token_ttl_seconds: int, *, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keep_ms = token_ttl_seconds * 1000 + _MARGIN_MS
        self._clock = clock

    async def check(self, user_id: int, session: Session) -> None:
        """Raise `bad_token` if the session was ended; one Redis round trip."""
        ended, everything_before = await self.redis.call(
            "HMGET", keys.revoked_sessions(user_id), session.id, EVERY_SESSION
        )
        if ended is not None:
            raise RequestError("bad_token", "this session was logged out; log in again")
        if everything_before is not None and session.started_ms <= int(everything_before):
            raise RequestError("bad_token", "every session of this user was logged out; log in again")

    async def end(self, user_id: int, session_id: str) -> None:
        await self._record(user_id, session_id, b"1")

    async def end_all(self, user_id: int) -> None:
        await self._record(user_id, EVERY_SESSION, int(self._clock() * 1000))

    async def _record(self, user_id: int, field: str, value: bytes | int) -> None:
        key = keys.revoked_sessions(user_id)
        await self.redis.transaction(("HSET", key, field, value), ("PEXPIRE", key, self.keep_ms))
