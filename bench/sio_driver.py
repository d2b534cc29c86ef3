"""Driver for :mod:`bench.sio_server`: one python-socketio ``AsyncClient`` per user, websocket
transport only, each send acknowledged through the socket.io callback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import socketio

from loadtest.driver import OnMessage, SendError, partner_of, url_of

SEND_TIMEOUT = 10.0
CONNECT_CONCURRENCY = 20


class SocketioDriver:
    name = "socketio"

    def __init__(self) -> None:
        self._clients: list[Any] = []
        self._on_message: OnMessage | None = None

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self._clients = [self._client(user) for user in range(users)]

        async def connect(user: int) -> None:
            async with gate:
                await self._clients[user].connect(
                    url_of(user, urls), transports=["websocket"], auth={"user": user}, wait_timeout=SEND_TIMEOUT,
                )

        await asyncio.gather(*(connect(user) for user in range(users)))

    def _client(self, user: int) -> Any:
        client = socketio.AsyncClient(reconnection=False)

        async def on_msg(data: dict[str, Any]) -> None:
            now = time.monotonic()
            if self._on_message is not None:
                self._on_message(user, data["key"], now)

        client.on("msg", on_msg)
        return client

    async def start_receiving(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def send(self, sender: int, key: str) -> None:
        try:
            await self._clients[sender].call("msg", {"to": partner_of(sender), "key": key}, timeout=SEND_TIMEOUT)
        except socketio.exceptions.TimeoutError as exc:
            raise SendError("timeout") from exc
        except socketio.exceptions.SocketIOError as exc:
            raise SendError("connection_closed", str(exc)) from exc

    async def close(self) -> None:
        async def disconnect(client: Any) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)

        await asyncio.gather(*(disconnect(client) for client in self._clients))
        self._clients.clear()
