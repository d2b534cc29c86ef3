"""A live gateway's `/metrics` after known traffic: the counts are what the traffic makes them,
and Prometheus's own checker (`promtool check metrics`, Debian package prometheus) accepts the
text."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import wait_for_value as poll
from tests.support.stack import Stack
from tests.support.system_programs import require_program
from tests.support.users import new_user

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(stack: Stack, gateway: int = 0) -> str:
    url = stack.gateway_urls[gateway].replace("ws://", "http://").replace("/ws", "/metrics")

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain"), response.headers
            text: str = response.read().decode()
            return text

    return await asyncio.to_thread(get)


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counts_after_known_traffic(stack: Stack) -> None:
    alice = await new_user(stack, "alice")  # register + login
    bob = await new_user(stack, "bob")
    dialog = await alice.open_dialog("bob")
    for n in range(3):
        await alice.send(dialog["id"], f"hello {n}")
    for _ in range(3):
        pushed = await bob.next_push()
        assert pushed["type"] == "message"
    assert len(await alice.history(dialog["id"])) == 3
    await alice.send_raw('{"type": "send"}')  # invalid: no fields
    assert (await alice.next_push())["code"] == "invalid"
    await alice.ws.send(b"\x00")  # binary
    assert (await alice.next_push())["code"] == "bad_frame"
    await alice.close()  # code 1000

    closed = await poll(lambda: scrape(stack), lambda t: value(samples(t), "chat_gateway_closes_total",
                                                                code="1000") == 1, "alice's close to be counted")
    found = samples(closed)
    received = "chat_gateway_frames_in_total"
    for kind, count in [("register", 2), ("login", 2), ("open_dialog", 1), ("send", 3), ("history", 1),
                        ("rejected", 1), ("binary", 1), ("sync", 0)]:
        assert value(found, received, type=kind) == count, (kind, closed)
    sent = "chat_gateway_frames_out_total"
    for kind, count in [("registered", 2), ("logged_in", 2), ("dialog", 1), ("sent", 3), ("message", 3),
                        ("history", 1), ("error", 2), ("synced", 0)]:
        assert value(found, sent, type=kind) == count, (kind, closed)
    assert value(found, "chat_gateway_error_frames_total", code="invalid") == 1
    assert value(found, "chat_gateway_error_frames_total", code="bad_frame") == 1
    assert value(found, "chat_gateway_error_frames_total", code="unavailable") == 0
    assert value(found, "chat_gateway_connections_open") == 1  # bob
    assert value(found, "chat_ready", service="gateway") == 1
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "chat_gateway_slow_consumer_disconnects_total") == 0
    duration = "chat_gateway_request_seconds_count"
    assert value(found, duration, type="send") == 3
    assert value(found, duration, type="login") == 2
    assert value(found, duration, type="register") == 2
    assert value(found, "chat_gateway_request_timeouts_total", type="send") == 0
    # Each of bob's three live messages, from its sent_at to its push.
    assert value(found, "chat_gateway_delivery_seconds_count") == 3
    assert value(found, "chat_gateway_delivery_seconds_bucket", le="+Inf") == 3

    # No label carries a user or a dialog: every label value is a type, a code or a bucket.
    for (_, labels) in found:
        for key, label in labels:
            assert key in {"type", "code", "le", "service", "generation", "implementation", "major", "minor",
                           "patchlevel", "version"}, (key, label)
            assert str(dialog["id"]) != label

    promtool = require_program("promtool", "prometheus", "checking /metrics with Prometheus's own linter")
    await asyncio.to_thread(promtool_accepts, promtool, closed)


def promtool_accepts(promtool: str, text: str) -> None:
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert checked.returncode == 0, (checked.stdout.decode(), checked.stderr.decode())
