"""Reading a process's /healthz, /readyz and /metrics in tests: plain HTTP, the text parsed by
prometheus-client's own parser, and ``promtool check metrics`` on it."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (an error status is returned, not raised)."""
    try:
        with _NO_PROXY.open(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read().decode()


def wait_ready(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    status, body = 0, ""
    while time.monotonic() < deadline:
        try:
            status, body = get(url)
        except OSError as exc:
            status, body = 0, str(exc)
        if status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"expected {url} to answer 200 within {seconds:g} s, last got {status}: {body}")


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when absent (a counter never incremented)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum of every ``name`` sample whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in found.items() if n == name and wanted <= got)


def metric_names(text: str) -> set[str]:
    """Every sample name and family name in an exposition (``x_bucket``, ``x_count``, ``x``...)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def promtool_check(promtool: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
