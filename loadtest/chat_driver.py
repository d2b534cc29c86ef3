"""The :class:`~loadtest.driver.Driver` for our own backend, over :class:`chat_client.ChatClient`.

Users are ``lt-<run>-<i>``; they are registered on first use and logged in on later runs (a
password hash costs the auth service real CPU, so reusing them keeps setup short). Pair
``(2k, 2k+1)`` shares one dialog. A message's text is its key (plus optional padding) and its
``client_msg_id`` is ``<nonce>-<key>``, with a nonce fresh for each driver, so no send is ever
taken for a retry of one from an earlier run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import websockets

from chat_client import ChatClient, ServerError
from chat_client.client import Frame
from loadtest.driver import OnMessage, SendError, partner_of, url_of

PASSWORD = "loadtest-password-not-secret"
#: Connections being opened and logged in at once during setup.
SETUP_CONCURRENCY = 32


def username(run: str, user: int | str) -> str:
    return f"lt-{run}-{user}"


async def register_or_login(client: ChatClient, name: str) -> None:
    """Log ``client`` in as ``name``, registering the user first if it does not exist yet."""
    try:
        await client.register(name, f"{name}@loadtest.example.org", PASSWORD)
    except ServerError as error:
        if error.code not in ("username_taken", "email_taken"):
            raise
    await client.login(name, PASSWORD)


class ChatDriver:
    name = "chat"

    def __init__(
        self,
        run: str = "default",
        *,
        padding: int = 0,
        request_timeout: float = 10.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.run = run
        self._padding = " " + "x" * padding if padding else ""
        self._timeout = request_timeout
        self._connect_kwargs = connect_kwargs or {}
        self._nonce = uuid.uuid4().hex[:12]
        self._clients: list[ChatClient | None] = []
        self._dialogs: list[str] = []

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        if users < 2 or users % 2:
            raise ValueError(f"users must be even and at least 2, got {users}")
        self._clients = [None] * users
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def connect(user: int) -> None:
            async with gate:
                client = await ChatClient.connect(url_of(user, urls), **self._connect_kwargs)
                self._clients[user] = client
                await register_or_login(client, username(self.run, user))

        async with asyncio.TaskGroup() as group:
            for user in range(users):
                group.create_task(connect(user))
        dialogs: list[str] = [""] * users

        async def pair(user: int) -> None:
            async with gate:
                dialog = await self._client(user).open_dialog(username(self.run, partner_of(user)))
                dialogs[user] = dialogs[partner_of(user)] = dialog["id"]

        async with asyncio.TaskGroup() as group:
            for user in range(0, users, 2):
                group.create_task(pair(user))
        self._dialogs = dialogs

    async def start_receiving(self, on_message: OnMessage) -> None:
        for user in range(len(self._clients)):
            self._client(user).on_push = self._receiver(user, on_message)

    @staticmethod
    def _receiver(user: int, on_message: OnMessage) -> Any:
        def on_push(frame: Frame) -> None:
            if frame.get("type") != "message":
                return
            now = time.monotonic()
            text = frame.get("message", {}).get("text", "")
            on_message(user, text.split(" ", 1)[0], now)

        return on_push

    async def send(self, sender: int, key: str) -> None:
        frame = {
            "type": "send",
            "dialog_id": self._dialogs[sender],
            "text": key + self._padding,
            "client_msg_id": f"{self._nonce}-{key}",
        }
        try:
            await self._client(sender).call(frame, timeout=self._timeout)
        except ServerError as error:
            raise SendError(error.code or "error", str(error.frame.get("message", ""))) from error
        except TimeoutError as error:
            raise SendError("timeout", f"no reply within {self._timeout:g} s") from error
        except (ConnectionError, websockets.ConnectionClosed) as error:
            raise SendError("connection_closed", str(error)) from error

    def open_connections(self) -> int:
        return sum(1 for client in self._clients if client is not None and not client.closed)

    async def close(self) -> None:
        clients = [client for client in self._clients if client is not None]
        self._clients = []
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    def _client(self, user: int) -> ChatClient:
        client = self._clients[user]
        if client is None:
            raise RuntimeError(f"user {user} is not connected")
        return client
