"""chatkit.wire.wire_time: the one place the `sent_at` format (docs/PROTOCOL.md) is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from chatkit.wire import wire_time


def test_utc_moment_in_milliseconds_with_z() -> None:
    when = datetime(2026, 11, 27, 13, 44, 3, 123456, tzinfo=UTC)
    assert wire_time(when) == "2026-11-27T13:44:03.123Z"


def test_whole_second_still_has_milliseconds() -> None:
    assert wire_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


def test_other_zone_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2026, 11, 27, 15, 44, 3, 123000, tzinfo=plus_two)
    assert wire_time(when) == "2026-11-27T13:44:03.123Z"


def test_reads_back_as_the_same_millisecond() -> None:
    when = datetime(2030, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert datetime.fromisoformat(wire_time(when)) == when.replace(microsecond=999000)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        wire_time(datetime(2026, 1, 1))
