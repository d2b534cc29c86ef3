"""Driver for the raw relays of :mod:`bench.relay_server` (one process, or several over Redis)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

from bench.websocket_clients import close_all, connect_all
from loadtest.driver import OnMessage, SendError, partner_of, url_of

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode

SEND_TIMEOUT = 10.0
CONNECT_CONCURRENCY = 50


class RelayDriver:
    def __init__(self, name: str = "relay") -> None:
        self.name = name
        self._conns: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._counter = itertools.count(1)
        self._on_message: OnMessage | None = None

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        async def connect(user: int) -> ClientConnection:
            ws = await websockets.connect(f"{url_of(user, urls)}/{user}", compression=None, max_size=2**16)
            ready = _decode(await asyncio.wait_for(ws.recv(), SEND_TIMEOUT))
            if not ready.get("ready"):
                raise RuntimeError(f"relay answered {ready!r} instead of ready")
            return ws

        await connect_all(self._conns, users, connect, CONNECT_CONCURRENCY)

    async def start_receiving(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._readers = [asyncio.create_task(self._read(user, ws)) for user, ws in enumerate(self._conns)]

    async def send(self, sender: int, key: str) -> None:
        n = next(self._counter)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[n] = future
        try:
            await self._conns[sender].send(_encode({"to": partner_of(sender), "key": key, "n": n}).decode())
            await asyncio.wait_for(future, SEND_TIMEOUT)
        except TimeoutError as exc:
            raise SendError("timeout") from exc
        except (websockets.ConnectionClosed, ConnectionError) as exc:
            raise SendError("connection_closed", str(exc)) from exc
        finally:
            self._waiting.pop(n, None)

    async def close(self) -> None:
        await close_all(self._conns, self._readers)

    async def _read(self, user: int, ws: ClientConnection) -> None:
        assert self._on_message is not None
        on_message = self._on_message
        try:
            async for data in ws:
                now = time.monotonic()
                frame = _decode(data)
                key = frame.get("key")
                if key is not None:
                    on_message(user, key, now)
                    continue
                future = self._waiting.get(frame.get("ack", -1))
                if future is not None and not future.done():
                    future.set_result(None)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
