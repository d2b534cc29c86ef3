"""soketi (a Pusher-protocol server on uWebSockets.js) with its Redis adapter, and a driver for it.

The npm package is pinned in ``bench/soketi/package.json`` (with its lock file) and installed
into ``bench/soketi/node_modules`` on first use. soketi 1.6.1 depends on ``uWebSockets.js``
from GitHub, which cannot be fetched here; an ``overrides`` entry maps it to a build published
on the npm registry.

The driver speaks the Pusher protocol over plain websockets (``/app/<key>?protocol=7``). User
``i`` subscribes to ``private-user-<i>`` (its inbox) and to its partner's inbox; it sends
``client-msg`` events on the partner's inbox, which soketi hands to every other subscriber of
that channel, i.e. the partner. Private channels need an auth signature, HMAC-SHA256 of
``<socket_id>:<channel>`` with the app secret, computed here as an app server would.

Pusher client events have **no acknowledgement**. So that soketi sees the same load shape (a
window of un-acked messages per client), :meth:`SoketiDriver.send` returns when the partner has
received the message: the "ack" latency is then the end-to-end latency, and reports show only
end-to-end figures for soketi.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from bench.procs import Group
from bench.websocket_clients import close_all, connect_all
from loadtest.driver import OnMessage, SendError, partner_of, url_of

SOKETI_DIR = Path(__file__).resolve().parent / "soketi"
APP_ID = "bench"
APP_KEY = "bench-key"
APP_SECRET = "bench-secret"
SEND_TIMEOUT = 10.0
CONNECT_CONCURRENCY = 50
NPM_TIMEOUT = 600


def soketi_bin() -> Path:
    return SOKETI_DIR / "node_modules" / ".bin" / "soketi"


def ensure_installed() -> Path:
    """``npm ci`` into bench/soketi/node_modules unless soketi is already there."""
    if not soketi_bin().exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("soketi needs npm (Node 20), and none is on PATH")
        lock = SOKETI_DIR / "package-lock.json"
        command = [npm, "ci" if lock.exists() else "install", "--no-audit", "--no-fund"]
        print(f"installing soketi: {' '.join(command)} in {SOKETI_DIR}", flush=True)
        subprocess.run(command, cwd=SOKETI_DIR, check=True, timeout=NPM_TIMEOUT)
    return soketi_bin()


def start_servers(group: Group, ports: Sequence[int], redis_port: int) -> None:
    """One soketi per port, all on the Redis adapter of the Valkey at ``redis_port``."""
    binary = ensure_installed()
    for index, port in enumerate(ports, start=1):
        env = {
            "SOKETI_HOST": "127.0.0.1",
            "SOKETI_PORT": str(port),
            # The metrics/usage server always listens; each instance needs its own port.
            "SOKETI_METRICS_HOST": "127.0.0.1",
            "SOKETI_METRICS_SERVER_PORT": str(port + 1000),
            "SOKETI_ADAPTER_DRIVER": "redis",
            "SOKETI_DB_REDIS_HOST": "127.0.0.1",
            "SOKETI_DB_REDIS_PORT": str(redis_port),
            "SOKETI_DEFAULT_APP_ID": APP_ID,
            "SOKETI_DEFAULT_APP_KEY": APP_KEY,
            "SOKETI_DEFAULT_APP_SECRET": APP_SECRET,
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
            "SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "-1",
            "SOKETI_DEFAULT_APP_MAX_CONNS": "-1",
        }
        group.spawn(f"soketi-{index}", [str(binary), "start"], env=env, cwd=SOKETI_DIR)
    for index in range(1, len(ports) + 1):
        group.wait_log(f"soketi-{index}", "Server is up and running")
    group.wait_ports(ports)


def channel_auth(socket_id: str, channel: str) -> str:
    signature = hmac.new(APP_SECRET.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256).hexdigest()
    return f"{APP_KEY}:{signature}"


def inbox(user: int) -> str:
    return f"private-user-{user}"


class SoketiDriver:
    name = "soketi"
    #: No server acknowledgement: ``send`` returns on delivery (see the module docstring).
    has_ack = False

    def __init__(self) -> None:
        self._conns: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._delivered: dict[str, asyncio.Future[None]] = {}
        self._on_message: OnMessage | None = None

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        async def connect(user: int) -> ClientConnection:
            url = f"{url_of(user, urls)}/app/{APP_KEY}?protocol=7&client=bench&version=1.0"
            ws = await websockets.connect(url, compression=None)
            try:
                established = await _expect(ws, "pusher:connection_established")
                socket_id = json.loads(established["data"])["socket_id"]
                for channel in (inbox(user), inbox(partner_of(user))):
                    await ws.send(json.dumps({
                        "event": "pusher:subscribe",
                        "data": {"channel": channel, "auth": channel_auth(socket_id, channel)},
                    }))
                    await _expect(ws, "pusher_internal:subscription_succeeded")
            except BaseException:
                await ws.close()
                raise
            return ws

        await connect_all(self._conns, users, connect, CONNECT_CONCURRENCY)

    async def start_receiving(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._readers = [asyncio.create_task(self._read(user, ws)) for user, ws in enumerate(self._conns)]

    async def send(self, sender: int, key: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._delivered[key] = future
        frame = {"event": "client-msg", "channel": inbox(partner_of(sender)), "data": {"key": key}}
        try:
            await self._conns[sender].send(json.dumps(frame))
            await asyncio.wait_for(future, SEND_TIMEOUT)
        except TimeoutError as exc:
            raise SendError("timeout", "not delivered (Pusher client events have no ack)") from exc
        except websockets.ConnectionClosed as exc:
            raise SendError("connection_closed", str(exc)) from exc
        finally:
            self._delivered.pop(key, None)

    async def close(self) -> None:
        await close_all(self._conns, self._readers)

    async def _read(self, user: int, ws: ClientConnection) -> None:
        assert self._on_message is not None
        on_message = self._on_message
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in ws:
                now = time.monotonic()
                frame = json.loads(data)
                if frame.get("event") != "client-msg":
                    continue
                payload = frame["data"]
                key = (json.loads(payload) if isinstance(payload, str) else payload)["key"]
                on_message(user, key, now)
                future = self._delivered.get(key)
                if future is not None and not future.done():
                    future.set_result(None)


async def _expect(ws: ClientConnection, event: str) -> dict[str, Any]:
    deadline = time.monotonic() + SEND_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"soketi was expected to send {event!r}")
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if frame.get("event") == event:
            return frame
        if frame.get("event") == "pusher:error":
            raise RuntimeError(f"soketi answered {frame!r} while waiting for {event!r}")
