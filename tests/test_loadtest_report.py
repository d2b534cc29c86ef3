"""The report of a run: rates only over an interval long enough, a time series with enough points
for short runs and bounded for long ones, words and units instead of literals, the percentile
distribution, and PNG charts beside the HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from loadtest.report import print_summary, render_html, write_results
from loadtest.stats import REPORT_ROWS, Histogram, RunStats

URLS = ["ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8001/ws"]


def run_of(stats: RunStats, elapsed: float, **extra: Any) -> dict[str, Any]:
    config = {"urls": URLS, "users": 4, "window": 5, "rate": None, "messages": 10, "duration": None,
              "timeout": 600.0, "drain": 10.0, "allow_remote": False, "mode": "window"}  # fmt: skip
    return {
        "tool": "chat-loadtest", "driver": "chat", "started_at": "2026-12-04T23:00:00+00:00", "config": config,
        "setup_s": 1.5, "completed": True, "ok": stats.ok(), "summary": stats.summary(elapsed),
        "series_bucket_s": stats.bucket_s, "series": stats.series(), "distribution": stats.distribution(), **extra,
    }  # fmt: skip


def traffic(stats: RunStats, times: list[float], *, lose: int = 0) -> None:
    """One message per time, 0/n from user 0 to user 1, received 5 ms later (except ``lose``)."""
    for n, t in enumerate(times):
        key = f"0/{n}"
        stats.on_send(key, t)
        stats.on_ack(key, t + 0.002)
        if n >= lose:
            stats.on_receive(1, key, t + 0.005)


def test_a_blip_gets_no_per_second_rate_but_a_sub_second_series() -> None:
    stats = RunStats(0.0)
    traffic(stats, [i * 0.0001 for i in range(400)] + [0.043])  # 401 messages in 48 ms
    elapsed = stats.last_event - stats.start
    summary = stats.summary(elapsed)
    assert summary["delivered_per_s"] is None
    assert "too short a run for a per-second rate" in summary["rate_note"]
    rows = stats.series()
    assert stats.bucket_s < 1 and len(rows) >= 5
    assert sum(row["delivered"] for row in rows) == 401


def test_a_long_run_has_a_bounded_series_and_a_rate_over_the_whole_interval() -> None:
    stats = RunStats(0.0)
    traffic(stats, [i * 0.5 for i in range(6000)])  # 50 minutes
    elapsed = stats.last_event - stats.start
    assert stats.summary(elapsed)["delivered_per_s"] == pytest.approx(6000 / elapsed, abs=0.1)
    rows = stats.series()
    assert len(rows) <= REPORT_ROWS and sum(row["delivered"] for row in rows) == 6000
    width = stats.bucket_s
    assert width in (10.0, 20.0, 100.0) and rows[1]["t"] == width


def test_distribution_rises_to_the_maximum() -> None:
    histogram = Histogram()
    for ms in range(1, 1001):
        histogram.record(ms / 1000)
    points = histogram.distribution()
    percentiles = [p for p, _ in points]
    values = [v for _, v in points]
    assert percentiles[0] == 0.0 and percentiles[-1] == 100.0 and values[-1] == 1.0
    assert percentiles == sorted(percentiles) and values == sorted(values)
    # The last step before the maximum leaves one to two samples of the 1,000 above it.
    assert 0.1 <= 100.0 - percentiles[-2] <= 0.2
    assert Histogram().distribution() == []


def test_html_speaks_words_and_units_not_literals() -> None:
    stats = RunStats(0.0)
    traffic(stats, [i * 0.01 for i in range(300)], lose=1)
    page = render_html(run_of(stats, stats.last_event))
    assert "FAILED: 1 lost" in page
    assert not re.search(r"\b(True|False|None)\b", page)
    assert '{"' not in page and "[{" not in page
    assert "messages/s over the whole 3.0 s measured" in page
    assert "end to end (send to partner&#x27;s receipt)" in page


def test_results_are_json_html_and_png(tmp_path: Path) -> None:
    stats = RunStats(0.0)
    stats.on_connections(4, 0.0)
    traffic(stats, [i * 0.01 for i in range(300)])
    result = run_of(stats, stats.last_event)
    json_path, html_path = write_results(result, tmp_path)
    again, _ = write_results(result, tmp_path)  # never overwrites
    assert again != json_path
    assert json.loads(json_path.read_text())["summary"]["delivered"] == 300
    png = json_path.with_suffix(".png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = html_path.read_text()
    assert "<svg" in page and "Passed" in page
    assert "end-to-end latency by percentile" in page and "open connections and errors" in page


def test_a_run_too_short_to_chart_says_so(tmp_path: Path) -> None:
    stats = RunStats(0.0)
    traffic(stats, [0.0, 0.001, 0.002])
    _, html_path = write_results(run_of(stats, stats.last_event), tmp_path)
    assert "too short to chart over time" in html_path.read_text()


def test_console_summary_ends_with_the_verdict() -> None:
    stats = RunStats(0.0)
    traffic(stats, [i * 0.01 for i in range(200)])
    console = Console(record=True, width=140)
    print_summary(run_of(stats, stats.last_event), console)
    text = console.export_text()
    assert text.rstrip().endswith("Passed: every acknowledged message was delivered exactly once, no request failed.")
    assert "ok:" not in text and "True" not in text
