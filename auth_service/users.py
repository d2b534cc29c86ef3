"""The ``users`` table: the SQL, and what its errors mean to a client.

Names and addresses are compared lowercase, matching the ``lower()`` unique indexes so every
lookup is an index lookup. Emails are stored as given.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

from chatkit.db import CONNECTION_ERRORS, ValueRefused
from chatkit.errors import RequestError, Unavailable
from chatkit.wire import UserInfo, UserRef

# What pool.acquire() hands out: a proxy with the Connection API.
Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_COLUMNS = "id, username, email, password_hash"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str
    password_hash: str

    @property
    def ref(self) -> UserRef:
        return UserRef(id=self.id, username=self.username)

    @property
    def info(self) -> UserInfo:
        return UserInfo(id=self.id, username=self.username, email=self.email)


async def create(pool: asyncpg.Pool, username: str, email: str, password_hash: str) -> User:
    async with _connection(pool) as conn:
        try:
            row = await conn.fetchrow(
                f"INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) RETURNING {_COLUMNS}",
                username, email, password_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _taken(exc) from None
    assert row is not None
    return _user(row)


async def by_username(pool: asyncpg.Pool, username: str) -> User | None:
    async with _connection(pool) as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower($1)", username)
    return None if row is None else _user(row)


async def by_id(pool: asyncpg.Pool, user_id: int) -> User | None:
    async with _connection(pool) as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    return None if row is None else _user(row)


async def set_password_hash(pool: asyncpg.Pool, user_id: int, password_hash: str) -> None:
    async with _connection(pool) as conn:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def rename(pool: asyncpg.Pool, user_id: int, username: str) -> User | None:
    """The renamed user, or None if there is no such user any more. Taking another case of
    one's own name cannot conflict: the unique indexes only compare other rows."""
    async with _connection(pool) as conn:
        try:
            row = await conn.fetchrow(
                f"UPDATE users SET username = $2 WHERE id = $1 RETURNING {_COLUMNS}", user_id, username
            )
        except asyncpg.UniqueViolationError as exc:
            raise _taken(exc) from None
    return None if row is None else _user(row)


async def peers(pool: asyncpg.Pool, user_id: int) -> list[int]:
    """Ids of the users this one has a dialog with (told of a rename)."""
    async with _connection(pool) as conn:
        rows = await conn.fetch(
            "SELECT hi AS peer FROM dialogs WHERE lo = $1 UNION ALL SELECT lo FROM dialogs WHERE hi = $1", user_id
        )
    return [row["peer"] for row in rows]


@contextlib.asynccontextmanager
async def _connection(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A pooled connection, with PostgreSQL's failures turned into what the client is told."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except CONNECTION_ERRORS as exc:
        # The pool reconnects on a later acquire once the server is back.
        raise Unavailable(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
    except ValueRefused as exc:
        # What the gateway's format checks let through but PostgreSQL (or asyncpg, before
        # sending) refuses, e.g. a NUL byte.
        raise RequestError("invalid", f"the server cannot store that: {exc}") from None


def _taken(exc: asyncpg.UniqueViolationError) -> RequestError:
    # Both the plain UNIQUE constraints (users_username_key) and the lower() indexes
    # (users_username_ci) name the column first.
    constraint = exc.constraint_name or ""
    if constraint.startswith("users_username"):
        return RequestError("username_taken", "that username is taken")
    if constraint.startswith("users_email"):
        return RequestError("email_taken", "that email address is already registered")
    return RequestError("invalid", f"conflicts with an existing user ({constraint})")


def _user(row: asyncpg.Record) -> User:
    return User(id=row["id"], username=row["username"], email=row["email"], password_hash=row["password_hash"])
