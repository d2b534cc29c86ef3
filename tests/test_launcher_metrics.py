"""``python -m devstack`` gives every service its own metrics port, waits until each is ready,
and prints where to scrape it."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.launcher import WORKERS
from tests.support.ops_scrape import get, samples, value
from tests.test_launcher import RunningLauncher, _consecutive_free_ports

_METRICS_LINE = re.compile(r"^launcher: (\w+) metrics: (http://\S+/metrics)")


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[RunningLauncher]:
    running = RunningLauncher(tmp_path / "data", _consecutive_free_ports(2))
    yield running
    running.close()


def test_each_service_gets_a_metrics_port_and_it_is_printed(launcher: RunningLauncher) -> None:
    launcher.wait_ready(2)
    urls = {m[1]: m[2] for line in launcher.lines if (m := _METRICS_LINE.match(line))}
    assert sorted(urls) == sorted(WORKERS), f"expected a metrics line per service:\n{launcher.output()}"
    assert len(set(urls.values())) == len(WORKERS), urls
    for name, url in urls.items():
        status, body = get(url)
        assert status == 200, f"{url}: {status} {body}"
        assert value(samples(body), "chat_ready", service=name) == 1, body
        assert get(url.removesuffix("/metrics") + "/readyz")[0] == 200
    launcher.process.send_signal(signal.SIGINT)
    assert launcher.wait_exit() == 0
