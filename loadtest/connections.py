"""``--connections-only M``: what an idle, logged-in connection costs the gateway in memory.

Opens ``M`` connections, spread over the URLs, each logged in with ``auth`` using a token of one
of a few users (a token check is cheap; a password login per connection would measure argon2
instead). The gateway's resident memory (the sum over its processes, named by pid or found by
the port it listens on) is read before and after, while the connections sit idle for a few
seconds; the difference divided by ``M`` is the cost per connection. That is done twice: with a
bare client (``compression=None``) and with a browser-like handshake offering
permessage-deflate. Run each against a fresh gateway (``--compression``) for the cleanest
numbers: memory freed by the first batch may be reused by the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil

from chat_client import ChatClient
from loadtest.chat_driver import register_or_login, username
from loadtest.driver import url_of

TOKEN_USERS = 4
# Connections opened at once. What is measured is memory at rest, not how fast connections can be
# opened, so this stays modest: a burst of `auth` requests is not what this probe is about.
CONNECT_CONCURRENCY = 32
BROWSER_HEADERS = {
    "origin": "http://localhost",
    "user_agent_header": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126 Safari/537.36"
    ),
}
MODES: dict[str, dict[str, Any]] = {
    "bare": {"compression": None},
    "deflate": {"compression": "deflate", **BROWSER_HEADERS},
}


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pids_listening_on(ports: Iterable[int]) -> list[int]:
    """The pids of the processes with a TCP socket listening on any of ``ports``."""
    wanted = set(ports)
    pids: set[int] = set()
    with contextlib.suppress(psutil.AccessDenied):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted and conn.pid:
                pids.add(conn.pid)
        return sorted(pids)
    for process in psutil.process_iter():  # no right to list every socket: ask process by process
        with contextlib.suppress(psutil.Error):
            for own in process.net_connections(kind="tcp"):
                if own.status == psutil.CONN_LISTEN and own.laddr and own.laddr.port in wanted:
                    pids.add(process.pid)
    return sorted(pids)


def url_ports(urls: Iterable[str]) -> list[int]:
    ports = []
    for url in urls:
        parts = urlsplit(url)
        ports.append(parts.port or (443 if parts.scheme == "wss" else 80))
    return ports


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` together (a pid that is gone counts 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


@dataclass
class Measurement:
    mode: str
    requested: int
    opened: int
    failed: int
    rss_before: int
    rss_after: int
    extensions: str
    setup_s: float
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def per_connection(self) -> float | None:
        return (self.rss_after - self.rss_before) / self.opened if self.opened else None

    def to_json(self) -> dict[str, Any]:
        per = self.per_connection
        return {
            "mode": self.mode,
            "requested": self.requested,
            "opened": self.opened,
            "failed": self.failed,
            "rss_before_bytes": self.rss_before,
            "rss_after_bytes": self.rss_after,
            "per_connection_bytes": None if per is None else round(per),
            "per_connection_kib": None if per is None else round(per / 1024, 2),
            "negotiated_extensions": self.extensions,
            "setup_s": round(self.setup_s, 3),
            "failures": self.failures,
        }


async def fetch_tokens(urls: Sequence[str], run: str, users: int = TOKEN_USERS) -> list[str]:
    """Log in ``users`` users ``lt-<run>-conn-<k>`` (registering them if new); their tokens."""
    tokens: list[str] = []
    for k in range(users):
        async with await ChatClient.connect(url_of(k, urls)) as client:
            await register_or_login(client, username(run, f"conn-{k}"))
            assert client.token is not None
            tokens.append(client.token)
    return tokens


async def _open(url: str, token: str, kwargs: dict[str, Any], gate: asyncio.Semaphore) -> ChatClient:
    async with gate:
        client = await ChatClient.connect(url, **kwargs)
        try:
            await client.auth(token)
        except BaseException:
            await client.close()
            raise
        return client


async def measure(
    urls: Sequence[str], tokens: Sequence[str], count: int, mode: str, pids: Sequence[int], *, hold: float
) -> Measurement:
    """Open ``count`` idle authenticated connections in ``mode``, hold them ``hold`` seconds, read
    the RSS of ``pids``, close them."""
    kwargs = MODES[mode]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    before = rss_bytes(pids)
    started = time.monotonic()
    results = await asyncio.gather(
        *(_open(url_of(n, urls), tokens[n % len(tokens)], kwargs, gate) for n in range(count)),
        return_exceptions=True,
    )
    clients = [result for result in results if isinstance(result, ChatClient)]
    failures = Counter(str(result) or type(result).__name__ for result in results if isinstance(result, BaseException))
    setup_s = time.monotonic() - started
    try:
        await asyncio.sleep(hold)
        after = rss_bytes(pids)
        extensions = ""
        if clients and clients[0].ws.response is not None:
            extensions = clients[0].ws.response.headers.get("Sec-WebSocket-Extensions", "")
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    return Measurement(
        mode, count, len(clients), count - len(clients), before, after, extensions, setup_s, dict(failures)
    )


async def run_connections(
    urls: Sequence[str], count: int, pids: Sequence[int], *, modes: Sequence[str], run: str, hold: float = 3.0
) -> list[Measurement]:
    """One :class:`Measurement` per mode, in order, with a short pause between them so the
    gateway has closed the previous batch."""
    tokens = await fetch_tokens(urls, run)
    measurements: list[Measurement] = []
    for index, mode in enumerate(modes):
        if index:
            await asyncio.sleep(hold)
        measurements.append(await measure(urls, tokens, count, mode, pids, hold=hold))
    return measurements
