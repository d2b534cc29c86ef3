"""A chat user that survives anything the chaos tests do: one connection at a time to any
gateway, reconnecting and syncing as docs/PROTOCOL.md tells clients to, resending with the
same client_msg_id until acknowledged, and recording every delivery per connection and every
error frame it was answered with (an `internal` one is retried too, but counted: the test
decides how many a fault may cause)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, defaultdict
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
        # per dialog: client_msg_id -> the message its `sent` carried
        self.acked: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        # error codes the server answered with, and the `internal` frames themselves
        self.errors: Counter[str] = Counter()
        self.internal: list[dict[str, Any]] = []
        # per connection: the gateway URL it was made to
        self.connected_to: list[str] = []
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
                self._count(exc)
                if exc.code not in ("unavailable", "internal"):
                    raise
                await asyncio.sleep(0.2)
                continue
            except RETRYABLE:
                await asyncio.sleep(0.05)
                continue
            self.acked[dialog_id][cmid] = message
            self.have[dialog_id].add(message["seq"])
            return message
        raise AssertionError(f"{self.name}: send to {dialog_id} never acknowledged")

    @property
    def live(self) -> int:
        """How many messages were pushed live to this participant, on all its connections."""
        return sum(len(seqs) for pushed in self.pushes for seqs in pushed.values())

    def _count(self, exc: ServerError) -> None:
        self.errors[exc.code] += 1
        if exc.code == "internal":
            self.internal.append(exc.frame)

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

    async def _sync_until_done(self, client: ChatClient) -> None:
        """Sync as a client must after a `resync`: again until it succeeds, or until the
        connection is gone (the reconnect syncs then)."""
        while not client.closed:
            try:
                await self.sync()
                return
            except ServerError as exc:
                self._count(exc)
                if exc.code not in ("unavailable", "internal"):
                    raise
            except RETRYABLE:
                pass
            await asyncio.sleep(0.2)

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
                self.connected_to.append(url)
                self.deliveries.append(defaultdict(list))
                self.pushes.append(defaultdict(list))
                await self.sync()
            except ServerError as exc:
                self._count(exc)
                await client.close()
                await asyncio.sleep(0.1)
                continue
            except RETRYABLE:
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
                await self._sync_until_done(client)

    def _record(self, message: dict[str, Any], delivered: dict[str, list[int]]) -> None:
        dialog_id, seq = message["dialog_id"], message["seq"]
        delivered[dialog_id].append(seq)
        self.have[dialog_id].add(seq)
