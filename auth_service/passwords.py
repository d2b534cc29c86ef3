"""Password hashing: argon2id at the OWASP minimum, off the event loop and bounded.

Each hash or verify takes ~19 MiB and tens of milliseconds of CPU. Running them in threads keeps
the loop responsive; the semaphore caps how many run at once, so a burst of logins queues
instead of eating memory in proportion to the burst.
"""

from __future__ import annotations

import asyncio
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet, argon2id minimum configuration.
MEMORY_COST_KIB = 19456
TIME_COST = 2
PARALLELISM = 1
DEFAULT_CONCURRENCY = 4


def make_hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=TIME_COST,
        memory_cost=MEMORY_COST_KIB,
        parallelism=PARALLELISM,
        type=argon2.Type.ID,
    )


class Passwords:
    """Create one per running service: the semaphore belongs to the event loop that uses it."""

    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or make_hasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    async def prepare(self) -> None:
        """Make the hash :meth:`verify_dummy` checks against, so not even the first login of
        an unknown name takes longer (a hash and a verify) than a wrong password does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def verify_dummy(self, password: str) -> None:
        """Spend the same work as a real verify, for a user that does not exist, so the answer
        time does not tell whether a username is registered."""
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError is a VerificationError: a wrong password.
            return False
