"""What a load run measured: latency histograms, delivery bookkeeping, a time series.

Latencies go into :class:`Histogram`, an HDR-like histogram of logarithmic buckets: memory and
the cost of a percentile stay bounded however long the run, and a percentile is within
:data:`RELATIVE_ERROR` of the true sample value (count, min, max and mean are exact).

:class:`RunStats` checks every message off on the receiving side: a key that was acked and never
received is *lost*, a key received more than once is *duplicated* (each extra copy counts once),
a key received by anyone but the sender's partner is *misrouted*.

The time series starts with 10 ms buckets and widens them (1-2-10 steps: 10 ms, 20 ms, 100 ms,
200 ms, 1 s, 2 s, 10 s...) whenever a run outgrows :data:`MAX_BUCKETS`, so a 50 ms run still has
five points and a day-long soak a bounded number of rows.

Why this histogram and not the ``hdrhistogram`` package (HdrHistogram's Python port, 0.10.8):
measured on 200,000 log-normal latencies (p50 50 ms), recording costs 2.1 µs a value here against
2.6 µs (2 significant digits) and 3.0 µs (3 digits) there, a percentile 0.2 ms against 0.5 ms,
and both stay within 0.5 % of the exact percentiles (3 digits: 0.15 %, at 40 % more time per
value). The load generator's own CPU is what limits a run on a small machine, so this one stays.
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
#: The first (finest) width of a time-series bucket, and how many buckets a series may hold
#: before they are merged into wider ones.
FIRST_BUCKET_S = 0.01
MAX_BUCKETS = 1200
#: At most this many rows in a report's time series (buckets merged, 1-2-10 steps, to fit).
REPORT_ROWS = 100
#: Below this measured interval a "per second" rate would be extrapolated from a blip: none is given.
MIN_RATE_INTERVAL_S = 1.0


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

    def distribution(self) -> list[tuple[float, float]]:
        """``(percentile, seconds)`` points for a percentile distribution chart, as HdrHistogram's
        plotter draws it: 0, 50, 75, 87.5, ... (each step halves what is left) up to the
        percentile one sample stands for, then 100 (the maximum). Empty when nothing was recorded."""
        if not self.count:
            return []
        points: list[tuple[float, float]] = []
        remaining = 1.0
        while True:
            p = 100.0 * (1.0 - remaining)
            points.append((p, self.percentile(p)))
            remaining /= 2.0
            if remaining * self.count < 1.0 or remaining < 1e-6:
                break
        points.append((100.0, self.max))
        return points

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
class Bucket:
    """What happened during one bucket of the time series."""

    sent: int = 0
    acked: int = 0
    delivered: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    #: Open connections at the end of the bucket (None: no change seen in it).
    connections: int | None = None

    def merge(self, other: Bucket) -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.delivered += other.delivered
        self.errors += other.errors
        self.latency.merge(other.latency)
        if other.connections is not None:
            self.connections = other.connections


def _next_width(width: float) -> float:
    """10 ms -> 20 ms -> 100 ms -> 200 ms -> 1 s -> 2 s -> 10 s ...: each a whole multiple of the last."""
    mantissa = round(width / 10 ** math.floor(math.log10(width) + 1e-9))
    return width * (2 if mantissa == 1 else 5)


class Series:
    """Buckets of :class:`Bucket` from an origin; widened (merged) when they would be too many."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.width = FIRST_BUCKET_S
        self._buckets: dict[int, Bucket] = {}

    def at(self, now: float) -> Bucket:
        offset = max(0.0, now - self.start)
        while int(offset / self.width) >= MAX_BUCKETS:
            self._widen()
        index = int(offset / self.width)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = Bucket()
        return bucket

    def _widen(self) -> None:
        self.width, self._buckets = self._merged(_next_width(self.width))

    def _merged(self, wider: float) -> tuple[float, dict[int, Bucket]]:
        factor = round(wider / self.width)
        merged: dict[int, Bucket] = {}
        for index in sorted(self._buckets):
            merged.setdefault(index // factor, Bucket()).merge(self._buckets[index])
        return wider, merged

    def report_width(self) -> float:
        """The bucket width of :meth:`rows`: the finest that gives at most :data:`REPORT_ROWS`."""
        width, last = self.width, max(self._buckets, default=0)
        while (last + 1) * self.width / width > REPORT_ROWS:
            width = _next_width(width)
        return width

    def rows(self) -> list[dict[str, Any]]:
        """One row per :meth:`report_width` bucket from the origin to the last bucket anything
        happened in; ``connections`` carried forward from the last bucket that saw a change."""
        width = self.report_width()
        buckets = self._buckets if width == self.width else self._merged(width)[1]
        last = max(buckets, default=-1)
        rows: list[dict[str, Any]] = []
        connections: int | None = None
        for index in range(last + 1):
            bucket = buckets.get(index) or Bucket()
            if bucket.connections is not None:
                connections = bucket.connections
            p99 = bucket.latency.percentile(99.0)
            rows.append({
                "t": round(index * width, 3),
                "sent": bucket.sent,
                "acked": bucket.acked,
                "delivered": bucket.delivered,
                "errors": bucket.errors,
                "p99_ms": None if math.isnan(p99) else round(p99 * 1000.0, 3),
                "connections": connections,
            })
        return rows


class RunStats:
    """Bookkeeping for one run. Times are ``time.monotonic()`` seconds; ``start`` is the origin of
    the time series."""

    def __init__(self, start: float) -> None:
        self._series = Series(start)
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
        #: Open connections, as last told by :meth:`on_connections`.
        self.connections = 0
        #: When set, end-to-end latencies are also recorded here (a stage of a crowd run).
        self.window: Histogram | None = None

    @property
    def start(self) -> float:
        """The origin of the time series and of the measured interval."""
        return self._series.start

    @start.setter
    def start(self, value: float) -> None:
        self._series.start = value

    # --- recording ----------------------------------------------------------------------------

    def on_send(self, key: str, now: float) -> None:
        self.sent += 1
        self._send_times[key] = now
        self._series.at(now).sent += 1

    def on_ack(self, key: str, now: float) -> None:
        self.acked += 1
        self._acked_keys.add(key)
        if key not in self._received:
            self._outstanding += 1
        self.ack.record(now - self._send_times[key])
        self.last_event = max(self.last_event, now)
        self._series.at(now).acked += 1

    def on_error(self, code: str, now: float, message: str = "") -> None:
        self.errors[code] += 1
        self.error_examples.setdefault(code, message)
        self.last_event = max(self.last_event, now)
        self._series.at(now).errors += 1

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
        if self.window is not None:
            self.window.record(latency)
        self.last_event = max(self.last_event, now)
        bucket = self._series.at(now)
        bucket.delivered += 1
        bucket.latency.record(latency)

    def on_connections(self, count: int, now: float) -> None:
        self.connections = count
        self._series.at(now).connections = count

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
        """Counts and latencies; ``delivered_per_s`` over the whole measured interval ``elapsed``
        (None, with ``rate_note``, when that interval is too short for a per-second rate)."""
        rate_ok = elapsed >= MIN_RATE_INTERVAL_S
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
            "delivered_per_s": round(self.delivered / elapsed, 1) if rate_ok else None,
            "rate_note": None if rate_ok else (
                f"{self.delivered:,} delivered in {elapsed * 1000:.0f} ms: too short a run for a per-second rate"
            ),
            "latency_ms": {"end_to_end": self.end_to_end.summary(), "ack": self.ack.summary()},
        }

    @property
    def bucket_s(self) -> float:
        """The width of the reported time series' buckets, seconds."""
        return self._series.report_width()

    def series(self) -> list[dict[str, Any]]:
        """One row per bucket (:attr:`bucket_s` wide) from the start to the last bucket anything
        happened in."""
        return self._series.rows()

    def distribution(self) -> list[dict[str, float]]:
        """End-to-end latency against percentile (HdrHistogram plotter points), milliseconds."""
        return [{"percentile": p, "ms": round(v * 1000.0, 3)} for p, v in self.end_to_end.distribution()]
