"""Leak detection on a server process's samples: does a series keep growing after warm-up?

Pure functions, no I/O. A series is judged on its samples after the warm-up only, with the
Theil-Sen slope (the median of the slopes between every pair of samples): robust to outliers
and to a few spikes, unlike least squares. A process is **growing** when, for its resident
memory or its open file descriptors,

- the slope over all post-warm-up samples exceeds the limit (:data:`RSS_LIMIT_BYTES_PER_H`,
  :data:`FDS_LIMIT_PER_H`), **and**
- so does the slope over the second half of them: growth that is still going on at the end. A
  single step (an allocator arena grown once, a connection pool filled) then a plateau passes;
- and the fitted growth over the judged window (slope x its length) is at least
  :data:`RSS_FLOOR_BYTES` (:data:`FDS_FLOOR`): a few MiB come and go in any Python process, and
  extrapolated to an hour they would fail every short run.

There must be at least :data:`MIN_SAMPLES` post-warm-up samples; fewer and the verdict is
"too short to judge". CPU is reported (mean, slope) but not judged: on a shared machine it
follows the neighbours as much as the process.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Resident memory may grow at most this fast after warm-up (20 MiB per hour).
RSS_LIMIT_BYTES_PER_H = 20 * 2**20
#: Open file descriptors may grow at most this fast after warm-up.
FDS_LIMIT_PER_H = 30.0
#: Growth below these, over the judged window, is noise whatever its slope.
RSS_FLOOR_BYTES = 4 * 2**20
FDS_FLOOR = 8.0
MIN_SAMPLES = 8
#: Theil-Sen is quadratic in the samples; longer series are thinned evenly to this many.
MAX_POINTS = 400


def theil_sen(times: Sequence[float], values: Sequence[float]) -> float:
    """The median of the pairwise slopes ``(v_j - v_i) / (t_j - t_i)`` over pairs with distinct
    times; 0.0 with fewer than two distinct times."""
    if len(times) != len(values):
        raise ValueError(f"times and values must be as long as each other, got {len(times)} and {len(values)}")
    if len(times) > MAX_POINTS:
        step = len(times) / MAX_POINTS
        picked = [int(i * step) for i in range(MAX_POINTS)]
        times, values = [times[i] for i in picked], [values[i] for i in picked]
    slopes = [
        (values[j] - values[i]) / (times[j] - times[i])
        for i in range(len(times))
        for j in range(i + 1, len(times))
        if times[j] != times[i]
    ]
    return statistics.median(slopes) if slopes else 0.0


@dataclass(frozen=True)
class Limits:
    rss_bytes_per_h: float = RSS_LIMIT_BYTES_PER_H
    fds_per_h: float = FDS_LIMIT_PER_H
    rss_floor_bytes: float = RSS_FLOOR_BYTES
    fds_floor: float = FDS_FLOOR
    min_samples: int = MIN_SAMPLES


DEFAULT_LIMITS = Limits()


def _per_hour(times: Sequence[float], values: Sequence[float]) -> float:
    return theil_sen(times, values) * 3600.0


def _grows(times: Sequence[float], values: Sequence[float], limit: float, floor: float) -> tuple[bool, float]:
    """Whether the series grows faster than ``limit`` per hour over all of it and over its second
    half, by at least ``floor`` over its span; and its slope per hour."""
    whole = _per_hour(times, values)
    half = len(times) // 2
    late = _per_hour(times[half:], values[half:])
    span_h = (times[-1] - times[0]) / 3600.0
    return whole > limit and late > limit and whole * span_h >= floor, whole


def judge(samples: Sequence[dict[str, float]], warmup_s: float, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The trend of one process's ``samples`` (dicts with ``t`` seconds, ``rss_bytes``, ``fds``,
    ``cpu_percent``) after ``warmup_s``: slopes per hour and a verdict, ``"steady"``,
    ``"growing"`` (with the reason) or ``"too short to judge"``."""
    judged = [sample for sample in samples if sample["t"] >= warmup_s]
    trend: dict[str, Any] = {"samples_judged": len(judged), "rss_bytes_per_h": None, "fds_per_h": None,
                             "cpu_percent_per_h": None, "verdict": "too short to judge", "reason": ""}  # fmt: skip
    if len(judged) < limits.min_samples:
        trend["reason"] = f"{len(judged)} sample(s) after warm-up, {limits.min_samples} needed"
        return trend
    times = [sample["t"] for sample in judged]
    rss = [sample["rss_bytes"] for sample in judged]
    rss_grows, rss_slope = _grows(times, rss, limits.rss_bytes_per_h, limits.rss_floor_bytes)
    fds_grows, fds_slope = _grows(times, [sample["fds"] for sample in judged], limits.fds_per_h, limits.fds_floor)
    trend.update(
        rss_bytes_per_h=round(rss_slope),
        fds_per_h=round(fds_slope, 1),
        cpu_percent_per_h=round(_per_hour(times, [sample["cpu_percent"] for sample in judged]), 1),
    )
    reasons = []
    if rss_grows:
        reasons.append(f"RSS grows {rss_slope / 2**20:.1f} MiB/h (limit {limits.rss_bytes_per_h / 2**20:g})")
    if fds_grows:
        reasons.append(f"open files grow {fds_slope:.0f}/h (limit {limits.fds_per_h:g})")
    trend["verdict"] = "growing" if reasons else "steady"
    trend["reason"] = "; ".join(reasons)
    return trend
