"""The one backoff of every retry loop against a backing server, Redis or PostgreSQL alike: the
first retry 50 ms after a failure, each next one twice as late, never more than 2 s apart.

It lives beside the Redis layer rather than in it because PostgreSQL's connect loop
(:func:`chatkit.db.create_pool`) and the storage worker's outage pauses use it too. A loop calls
:meth:`Backoff.wait` after each failure and :meth:`Backoff.reset` once the server answers again,
so the next outage starts from the short pause."""

from __future__ import annotations

import asyncio

FIRST_SECONDS = 0.05
MAX_SECONDS = 2.0


def backoff_delay(attempt: int, *, first: float = FIRST_SECONDS, cap: float = MAX_SECONDS) -> float:
    """The pause before retry number ``attempt`` (0 for the first retry): ``first * 2**attempt``,
    at most ``cap``."""
    if attempt < 0:
        raise ValueError(f"attempt: expected 0 or more, got {attempt}")
    # Past 2**32 the cap has long been reached; the bound keeps the float finite.
    return float(min(cap, first * 2 ** min(attempt, 32)))


class Backoff:
    def __init__(self, *, first: float = FIRST_SECONDS, cap: float = MAX_SECONDS) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"expected 0 < first <= cap, got first={first}, cap={cap}")
        self.first = first
        self.cap = cap
        # Failures since the last reset.
        self.attempt = 0

    def next_delay(self) -> float:
        """The pause for this failure; the next one will be twice as long (up to the cap)."""
        delay = backoff_delay(self.attempt, first=self.first, cap=self.cap)
        self.attempt += 1
        return delay

    async def wait(self) -> float:
        """Sleep the pause for this failure; returns how long that was."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        """The server answered: the next failure starts over from the first, short pause."""
        self.attempt = 0
