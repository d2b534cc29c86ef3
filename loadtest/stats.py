"""What a load run measured: latency histograms, delivery bookkeeping, a per-second series.

Latencies go into :class:`Histogram`, an HDR-like histogram of logarithmic buckets: memory and
the cost of a percentile stay bounded however long the run, and a percentile is within
:data:`RELATIVE_ERROR` of the true sample value (count, min, max and mean are exact).

:class:`RunStats` checks every message off on the receiving side: a key that was acked and never
received is *lost*, a key received more than once is *duplicated* (each extra copy counts once),
a key received by anyone but the sender's partner is *misrouted*.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest.driver import key_sender, partner_of

#: Bucket growth factor: bucket ``i`` holds values in ``[GROWTH**i, GROWTH**(i+1))`` microseconds.
GROWTH = 1.01
#: Reporting a bucket's geometric midpoint errs by at most half a bucket's width.
RELATIVE_ERROR = (GROWTH - 1) / 2
_LOG_GROWTH = math.log(GROWTH)
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


class Histogram:
    """Latencies in seconds; percentiles by nearest rank."""

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        micros = max(seconds * 1e6, 1.0)
        self._buckets[int(math.log(micros) / _LOG_GROWTH)] += 1
        self.count += 1
        self.total += seconds
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)

    def merge(self, other: Histogram) -> None:
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def percentile(self, p: float) -> float:
        """The smallest recorded value (to within :data:`RELATIVE_ERROR`) that at least ``p``
        percent of the samples do not exceed; NaN when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {p}")
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                midpoint = math.exp((index + 0.5) * _LOG_GROWTH) / 1e6
                return min(max(midpoint, self.min), self.max)
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        """count, mean, min, p50, p90, p99, p99.9, max, in milliseconds (None when empty)."""
        out: dict[str, float | int | None] = {"count": self.count}
        values: list[tuple[str, float]] = [("mean", self.mean), ("min", self.min)]
        values += [(_percentile_name(p), self.percentile(p)) for p in PERCENTILES]
        values.append(("max", self.max))
        for name, seconds in values:
            out[name] = round(seconds * 1000.0, 3) if self.count else None
        return out


def _percentile_name(p: float) -> str:
    return f"p{p:g}"


@dataclass
class Second:
    """What happened during one second of the run."""

    sent: int = 0
    acked: int = 0
    delivered: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)


class RunStats:
    """Bookkeeping for one run. Times are ``time.monotonic()`` seconds; ``start`` is the origin of
    the per-second series."""

    def __init__(self, start: float) -> None:
        self.start = start
        #: When the last ack, error or delivery happened: the end of the measured interval.
        self.last_event = start
        self.end_to_end = Histogram()
        self.ack = Histogram()
        self.errors: Counter[str] = Counter()
        #: The first message seen for each error code, to tell a user what went wrong.
        self.error_examples: dict[str, str] = {}
        self.sent = 0
        self.acked = 0
        self.duplicated = 0
        self.misrouted = 0
        self.unexpected = 0
        self._send_times: dict[str, float] = {}
        self._acked_keys: set[str] = set()
        self._received: set[str] = set()
        self._outstanding = 0  # acked, not received yet
        self._seconds: dict[int, Second] = {}

    # --- recording ----------------------------------------------------------------------------

    def on_send(self, key: str, now: float) -> None:
        self.sent += 1
        self._send_times[key] = now
        self._second(now).sent += 1

    def on_ack(self, key: str, now: float) -> None:
        self.acked += 1
        self._acked_keys.add(key)
        if key not in self._received:
            self._outstanding += 1
        self.ack.record(now - self._send_times[key])
        self.last_event = max(self.last_event, now)
        self._second(now).acked += 1

    def on_error(self, code: str, now: float, message: str = "") -> None:
        self.errors[code] += 1
        self.error_examples.setdefault(code, message)
        self.last_event = max(self.last_event, now)
        self._second(now).errors += 1

    def on_receive(self, receiver: int, key: str, now: float) -> None:
        sent_at = self._send_times.get(key)
        if sent_at is None:
            # Not sent in this run (a leftover from an earlier one sharing the users) or garbled.
            self.unexpected += 1
            return
        if key in self._received:
            self.duplicated += 1
            return
        if partner_of(key_sender(key)) != receiver:
            self.misrouted += 1
            return
        self._received.add(key)
        if key in self._acked_keys:
            self._outstanding -= 1
        latency = now - sent_at
        self.end_to_end.record(latency)
        self.last_event = max(self.last_event, now)
        second = self._second(now)
        second.delivered += 1
        second.latency.record(latency)

    def _second(self, now: float) -> Second:
        index = max(0, int(now - self.start))
        second = self._seconds.get(index)
        if second is None:
            second = self._seconds[index] = Second()
        return second

    # --- reading ------------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        return len(self._received)

    @property
    def lost(self) -> int:
        """Acked messages their partner has not received (yet)."""
        return self._outstanding

    def all_delivered(self) -> bool:
        return self._outstanding == 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def ok(self) -> bool:
        """No loss, no duplicate, nothing misrouted or unexpected, no error."""
        problems = self.lost + self.duplicated + self.misrouted + self.unexpected + self.error_count
        return problems == 0

    def summary(self, elapsed: float) -> dict[str, Any]:
        return {
            "elapsed_s": round(elapsed, 3),
            "sent": self.sent,
            "acked": self.acked,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "misrouted": self.misrouted,
            "unexpected": self.unexpected,
            "errors": dict(sorted(self.errors.items())),
            "error_examples": dict(sorted(self.error_examples.items())),
            "delivered_per_s": round(self.delivered / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {"end_to_end": self.end_to_end.summary(), "ack": self.ack.summary()},
        }

    def series(self) -> list[dict[str, Any]]:
        """One row per second from the start to the last second anything happened in."""
        last = max(self._seconds, default=-1)
        rows: list[dict[str, Any]] = []
        for index in range(last + 1):
            second = self._seconds.get(index) or Second()
            p99 = second.latency.percentile(99.0)
            rows.append({
                "t": index,
                "sent": second.sent,
                "acked": second.acked,
                "delivered": second.delivered,
                "errors": second.errors,
                "p99_ms": None if math.isnan(p99) else round(p99 * 1000.0, 3),
            })
        return rows
