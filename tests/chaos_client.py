"""A chat user that survives anything the chaos tests do: one connection at a time to any
gateway, reconnecting and syncing as docs/PROTOCOL.md tells clients to, resending with the
same client_msg_id until acknowledged, and recording every delivery per connection."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from chat_client import ChatClient, ServerError

PASSWORD = "chaos password 1"
RETRYABLE = (TimeoutError, ConnectionError, OSError)


class Participant:
    def __init__(self, name: str, urls: Callable[[], list[str]]) -> None:
        self.name = name
        self.urls = urls
        self.client: ChatClient | None = None
        self.token: str | None = None
        self.user_id = 0
        self.connections = 0
        # seqs held per dialog, from acks, pushes and syncs
        self.have: dict[str, set[int]] = defaultdict(set)
        # per connection: dialog -> seqs delivered to it, in arrival order (pushes and syncs)
        self.deliveries: list[dict[str, list[int]]] = []
        # per connection: dialog -> seqs pushed live, in arrival order
        self.pushes: list[dict[str, list[int]]] = []
        self.acked: dict[str, dict[int, str]] = defaultdict(dict)
        self.resyncs = 0
        self._connected = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def position(self, dialog_id: str) -> int:
        seqs, n = self.have[dialog_id], 0
        while n + 1 in seqs:
            n += 1
        return n

    async def register(self) -> None:
        client = await ChatClient.connect(self.urls()[0])
        try:
            user = await client.register(self.name, f"{self.name}@example.org", PASSWORD)
            self.user_id = user["id"]
            await client.login(self.name, PASSWORD)
            self.token = client.token
        finally:
            await client.close()

    async def start(self) -> None:
        await self._connect()
        self._pump = asyncio.create_task(self._run(), name=f"pump-{self.name}")

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self.client is not None:
            await self.client.close()

    async def open_dialog(self, peer: str) -> str:
        assert self.client is not None
        dialog = await self.client.open_dialog(peer)
        dialog_id: str = dialog["id"]
        return dialog_id

    async def send(self, dialog_id: str, text: str, *, deadline: float = 45.0) -> dict[str, Any]:
        """Send until acknowledged, always with the same client_msg_id."""
        cmid = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end:
            await asyncio.wait_for(self._connected.wait(), max(0.1, end - loop.time()))
            client = self.client
            assert client is not None
            try:
                message = await client.send(dialog_id, text, cmid)
            except ServerError as exc:
                if exc.code not in ("unavailable", "internal"):
                    raise
                await asyncio.sleep(0.2)
                continue
            except RETRYABLE:
                await asyncio.sleep(0.05)
                continue
            self.acked[dialog_id][message["seq"]] = message["id"]
            self.have[dialog_id].add(message["seq"])
            return message
        raise AssertionError(f"{self.name}: send to {dialog_id} never acknowledged")

    async def sync(self) -> None:
        client = self.client
        assert client is not None
        positions: dict[str, int] | None = {d: self.position(d) for d in self.have} or None
        while True:
            frame: dict[str, Any] = {"type": "sync"}
            if positions is not None:
                frame["dialogs"] = positions
            reply = await client.call(frame, timeout=5)
            for message in reply["messages"]:
                self._record(message, self.deliveries[-1])
            positions = reply["dialogs"]
            if not reply.get("more"):
                return

    async def _connect(self) -> None:
        self._connected.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + 45
        attempt = 0
        while loop.time() < end:
            urls = self.urls()
            url = urls[attempt % len(urls)]
            attempt += 1
            try:
                client = await ChatClient.connect(url, open_timeout=3)
            except RETRYABLE:
                await asyncio.sleep(0.1)
                continue
            try:
                assert self.token is not None
                await client.auth(self.token)
                self.client = client
                self.connections += 1
                self.deliveries.append(defaultdict(list))
                self.pushes.append(defaultdict(list))
                await self.sync()
            except (*RETRYABLE, ServerError):
                await client.close()
                await asyncio.sleep(0.1)
                continue
            self._connected.set()
            return
        raise AssertionError(f"{self.name} could not reconnect")

    async def _run(self) -> None:
        while True:
            client = self.client
            assert client is not None
            if client.closed:
                await self._connect()
                continue
            try:
                push = await client.next_push(timeout=0.2)
            except TimeoutError:
                continue
            if push["type"] == "message":
                self._record(push["message"], self.deliveries[-1])
                self.pushes[-1][push["message"]["dialog_id"]].append(push["message"]["seq"])
            elif push["type"] == "resync":
                self.resyncs += 1
                with contextlib.suppress(*RETRYABLE, ServerError):
                    await self.sync()

    def _record(self, message: dict[str, Any], delivered: dict[str, list[int]]) -> None:
        dialog_id, seq = message["dialog_id"], message["seq"]
        delivered[dialog_id].append(seq)
        self.have[dialog_id].add(seq)
