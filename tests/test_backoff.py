"""The one backoff (chatkit/backoff.py): doubling from 50 ms, capped at 2 s, reset to the start."""

from __future__ import annotations

import pytest

from chatkit.backoff import FIRST_SECONDS, MAX_SECONDS, Backoff, backoff_delay


def test_delays_double_from_the_first_up_to_the_cap() -> None:
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert delays[6:] == [MAX_SECONDS] * 4
    assert delays[0] == FIRST_SECONDS


def test_the_cap_holds_however_long_the_outage() -> None:
    assert backoff_delay(10_000) == MAX_SECONDS
    assert backoff_delay(10_000, first=0.5, cap=30) == 30
    assert min(backoff_delay(attempt) for attempt in range(200)) == FIRST_SECONDS


def test_reset_starts_over_from_the_short_pause() -> None:
    backoff = Backoff(first=0.01, cap=0.05)
    assert [backoff.next_delay() for _ in range(4)] == [0.01, 0.02, 0.04, 0.05]
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.01


async def test_wait_sleeps_the_next_delay() -> None:
    backoff = Backoff(first=0.001, cap=0.002)
    assert await backoff.wait() == 0.001
    assert await backoff.wait() == 0.002
    assert backoff.attempt == 2


def test_bad_bounds_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"expected 0 < first <= cap, got first=3, cap=2"):
        Backoff(first=3, cap=2)
    with pytest.raises(ValueError, match=r"attempt: expected 0 or more, got -1"):
        backoff_delay(-1)
