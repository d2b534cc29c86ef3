"""Password hashing: argon2id at the OWASP minimum, bounded concurrency."""

from __future__ import annotations

import asyncio
import threading

import argon2
import pytest

from auth_service.passwords import Passwords, make_hasher
from tests.support.users import PASSWORD


async def test_hash_is_argon2id_at_the_owasp_minimum() -> None:
    passwords = Passwords()
    digest = await passwords.hash(PASSWORD)
    assert digest.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in digest
    assert await passwords.hash(PASSWORD) != digest, "every hash gets its own salt"
    assert not passwords.needs_rehash(digest)


async def test_verify() -> None:
    passwords = Passwords()
    digest = await passwords.hash(PASSWORD)
    assert await passwords.verify(digest, PASSWORD)
    assert not await passwords.verify(digest, PASSWORD + "x")
    assert not await passwords.verify("not a hash", PASSWORD)
    await passwords.verify_dummy(PASSWORD)


@pytest.mark.parametrize("params", [{"time_cost": 1}, {"memory_cost": 8192}, {"type": argon2.Type.I}])
def test_weaker_or_other_hashes_need_rehash(params: dict[str, object]) -> None:
    old = argon2.PasswordHasher(**params).hash(PASSWORD)  # type: ignore[arg-type]
    assert Passwords().needs_rehash(old)
    assert Passwords().needs_rehash("not a hash")


class CountingHasher(argon2.PasswordHasher):
    """The real hasher, counting how many threads are inside ``hash`` at once."""

    def __init__(self) -> None:
        base = make_hasher()
        super().__init__(base.time_cost, base.memory_cost, base.parallelism, base.hash_len, base.salt_len,
                         type=base.type)
        self._lock = threading.Lock()
        self.running = self.peak = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().hash(password, salt=salt)
        finally:
            with self._lock:
                self.running -= 1


async def test_at_most_four_hashes_run_at_once() -> None:
    hasher = CountingHasher()
    passwords = Passwords(hasher=hasher)
    digests = await asyncio.gather(*(passwords.hash(f"{PASSWORD}{n}") for n in range(12)))
    assert len(set(digests)) == 12
    assert 1 < hasher.peak <= 4
