"""The load tester: a real run through two in-process gateways, its bookkeeping on a fake driver
that loses and duplicates on purpose, the histogram on known inputs, the loopback guard, and
the connections-only memory probe."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadtest import cli
from loadtest.chat_driver import ChatDriver
from loadtest.connections import run_connections
from loadtest.driver import OnMessage, SendError, key_sender, message_key, partner_of, url_of
from loadtest.report import write_results
from loadtest.runner import LoadConfig, run_load
from loadtest.stats import RELATIVE_ERROR, Histogram, RunStats
from loadtest.urls import RemoteURLError, is_loopback, require_loopback
from tests.support.stack import Stack

SUMMARY_KEYS = {
    "elapsed_s", "sent", "acked", "delivered", "lost", "duplicated", "misrouted", "unexpected", "errors",
    "error_examples", "delivered_per_s", "rate_note", "latency_ms",
}  # fmt: skip
LATENCY_KEYS = {"count", "mean", "min", "p50", "p90", "p99", "p99.9", "max"}


# --- against the real stack -----------------------------------------------------------------------


@pytest.mark.slow
async def test_window_run_through_two_gateways_delivers_everything_once(stack: Stack, tmp_path: Path) -> None:
    config = LoadConfig(urls=tuple(stack.gateway_urls), users=10, window=3, messages=20, timeout=50, drain=10)
    result = await run_load(ChatDriver("window"), config)

    stats = result.stats
    assert (stats.sent, stats.acked, stats.delivered) == (200, 200, 200)
    assert (stats.lost, stats.duplicated, stats.misrouted, stats.unexpected) == (0, 0, 0, 0)
    assert dict(stats.errors) == {}
    assert result.ok() and not result.deadline_hit
    assert stats.end_to_end.count == 200 and stats.ack.count == 200

    data = result.to_json()
    json_path, html_path = write_results(data, tmp_path / "out")
    written = json.loads(json_path.read_text())
    assert set(written) >= {"tool", "driver", "started_at", "config", "setup_s", "completed", "ok", "summary", "series"}
    assert set(written["summary"]) == SUMMARY_KEYS
    assert set(written["summary"]["latency_ms"]) == {"end_to_end", "ack"}
    assert set(written["summary"]["latency_ms"]["end_to_end"]) == LATENCY_KEYS
    assert written["config"]["urls"] == stack.gateway_urls and written["config"]["mode"] == "window"
    assert sum(row["delivered"] for row in written["series"]) == 200
    row_keys = {"t", "sent", "acked", "delivered", "errors", "p99_ms", "connections"}
    assert all(set(row) == row_keys for row in written["series"])
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 1
    # Self-contained: the inline SVG charts link only to their own elements (href="#...").
    assert "<script" not in page and "src=" not in page and not re.search(r'href="[^#]', page)


@pytest.mark.slow
async def test_rate_run_reuses_users_and_delivers_everything_once(stack: Stack) -> None:
    config = LoadConfig(urls=tuple(stack.gateway_urls), users=4, window=2, rate=400, messages=10, timeout=50)
    first = await run_load(ChatDriver("rate"), config)
    # The same users again: registration says username_taken, the driver logs in instead.
    second = await run_load(ChatDriver("rate"), config)
    for result in (first, second):
        assert (result.stats.sent, result.stats.delivered, result.stats.lost, result.stats.duplicated) == (40, 40, 0, 0)
        assert result.ok()
    assert second.to_json()["config"]["mode"] == "rate"


@pytest.mark.slow
async def test_connections_only_reports_memory_per_connection(stack: Stack) -> None:
    measurements = await run_connections(
        stack.gateway_urls, 50, [os.getpid()], modes=["bare", "deflate"], run="conns", hold=0.2
    )
    assert [m.mode for m in measurements] == ["bare", "deflate"]
    for m in measurements:
        assert (m.opened, m.failed) == (50, 0)
        assert m.rss_before > 0 and m.rss_after > 0
        # The report's figures are the measured growth of the named processes per connection.
        report = m.to_json()
        growth = (m.rss_after - m.rss_before) / m.opened
        assert (report["rss_before_bytes"], report["rss_after_bytes"]) == (m.rss_before, m.rss_after)
        assert report["per_connection_bytes"] == round(growth), report
        assert report["per_connection_kib"] == round(growth / 1024, 2), report


# --- bookkeeping on a fake system -----------------------------------------------------------------


class FakeDriver:
    """Delivers in memory, dropping the keys in ``drop`` and delivering those in ``twice`` twice;
    a send of a key in ``fail`` raises, one in ``hang`` never returns."""

    name = "fake"

    def __init__(self, *, drop: Sequence[str] = (), twice: Sequence[str] = (), fail: Sequence[str] = (),
                 hang: bool = False) -> None:  # fmt: skip
        self.drop, self.twice, self.fail, self.hang = set(drop), set(twice), set(fail), hang
        self.on_message: OnMessage | None = None
        self.closed = False
        self.urls: list[str] = []

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        self.urls = [url_of(user, urls) for user in range(users)]

    async def start_receiving(self, on_message: OnMessage) -> None:
        self.on_message = on_message

    async def send(self, sender: int, key: str) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if key in self.fail:
            raise SendError("unavailable")
        assert self.on_message is not None
        if key not in self.drop:
            for _ in range(2 if key in self.twice else 1):
                self.on_message(partner_of(sender), key, time.monotonic())

    async def close(self) -> None:
        self.closed = True


async def test_fake_run_counts_lost_duplicated_and_failed() -> None:
    urls = ("ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws")
    driver = FakeDriver(drop=["0/3"], twice=["1/1", "2/5"], fail=["3/2"])
    config = LoadConfig(urls=urls, users=4, window=2, messages=5, drain=0.05)
    result = await run_load(driver, config)
    stats = result.stats
    assert (stats.sent, stats.acked, stats.delivered) == (20, 19, 18)
    assert (stats.lost, stats.duplicated) == (1, 2)
    assert dict(stats.errors) == {"unavailable": 1}
    assert not result.ok() and driver.closed
    # Partners sit on different URLs.
    assert all(driver.urls[user] != driver.urls[partner_of(user)] for user in range(4))


async def test_run_stops_at_the_hard_deadline() -> None:
    driver = FakeDriver(hang=True)
    config = LoadConfig(urls=("ws://localhost:1/ws",), users=2, messages=5, timeout=0.3)
    result = await run_load(driver, config)
    assert result.deadline_hit and not result.ok() and driver.closed
    assert result.stats.errors["deadline"] == 1 and result.stats.acked == 0


def test_misrouted_and_unexpected_receipts_are_counted() -> None:
    stats = RunStats(0.0)
    stats.on_send("0/1", 0.0)
    stats.on_ack("0/1", 0.1)
    stats.on_receive(0, "0/1", 0.2)  # the sender itself, not its partner 1
    stats.on_receive(1, "5/9", 0.2)  # never sent
    assert (stats.misrouted, stats.unexpected, stats.lost, stats.delivered) == (1, 1, 1, 0)
    stats.on_receive(1, "0/1", 0.3)
    assert (stats.lost, stats.delivered) == (0, 1) and not stats.ok()


# --- histogram ------------------------------------------------------------------------------------


def test_histogram_percentiles_on_known_inputs() -> None:
    histogram = Histogram()
    for ms in range(1000, 0, -1):
        histogram.record(ms / 1000)
    tolerance = RELATIVE_ERROR + 1e-9
    for p, expected in [(50, 0.5), (90, 0.9), (99, 0.99), (99.9, 0.999), (100, 1.0)]:
        assert histogram.percentile(p) == pytest.approx(expected, rel=tolerance), p
    assert (histogram.count, histogram.min, histogram.max) == (1000, 0.001, 1.0)
    assert histogram.mean == pytest.approx(0.5005)
    summary = histogram.summary()
    assert summary["max"] == 1000.0 and summary["min"] == 1.0 and summary["count"] == 1000
    assert summary["p99"] == pytest.approx(990, rel=tolerance)


def test_histogram_edge_cases() -> None:
    empty = Histogram()
    assert math.isnan(empty.percentile(99)) and empty.summary()["p99"] is None
    single = Histogram()
    single.record(0.0123)
    assert single.percentile(0) == single.percentile(50) == single.percentile(100) == 0.0123
    skewed = Histogram()
    for _ in range(990):
        skewed.record(0.001)
    for _ in range(10):
        skewed.record(2.0)
    assert skewed.percentile(99) == pytest.approx(0.001, rel=RELATIVE_ERROR)
    assert skewed.percentile(99.9) == 2.0
    with pytest.raises(ValueError):
        skewed.percentile(101)


def test_message_keys_and_pairs() -> None:
    assert key_sender(message_key(17, 3)) == 17
    assert [partner_of(user) for user in range(4)] == [1, 0, 3, 2]
    with pytest.raises(ValueError):
        key_sender("garbage")


# --- loopback guard and arguments -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8000/ws", "ws://127.9.8.7/ws", "ws://localhost:1/ws",
                                 "ws://[::1]:8000/ws", "wss://LOCALHOST/ws"])  # fmt: skip
def test_loopback_urls_are_allowed(url: str) -> None:
    assert is_loopback(url)
    require_loopback([url])


@pytest.mark.parametrize("url", ["ws://10.0.0.1:8000/ws", "ws://example.org/ws", "ws://128.0.0.1/ws",
                                 "ws://[2001:db8::1]/ws", "ws://0.0.0.0:8000/ws"])  # fmt: skip
def test_non_loopback_urls_are_refused(url: str) -> None:
    assert not is_loopback(url)
    with pytest.raises(RemoteURLError):
        require_loopback(["ws://127.0.0.1/ws", url])
    require_loopback([url], allow_remote=True)


def test_cli_refuses_remote_url_and_bad_shapes_with_exit_2(tmp_path: Path) -> None:
    out = ["--out", str(tmp_path)]
    assert cli.run(["--url", "ws://192.0.2.1:8000/ws", *out]) == 2
    assert cli.run(["--url", "ws://192.0.2.1:8000/ws", "--connections-only", "5", *out]) == 2
    assert cli.run(["--users", "3", *out]) == 2
    assert cli.run(["--window", "0", *out]) == 2
    assert cli.run(["--messages", "5", "--duration", "1", *out]) == 2
    assert cli.run(["--url", "http://127.0.0.1/ws", *out]) == 2
    assert list(tmp_path.iterdir()) == []
