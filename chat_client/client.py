"""One WebSocket connection to a gateway: requests with a ``ref`` are matched to their direct
replies; everything else (live messages, resync hints) arrives on :meth:`ChatClient.next_push`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

Frame = dict[str, Any]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class ServerError(Exception):
    """The server answered a request with an error frame."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code: str = frame.get("code", "")
        self.frame = frame


class ChatClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.user: Frame | None = None
        self.token: str | None = None
        self._refs = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Frame]] = {}
        self._pushes: asyncio.Queue[Frame] = asyncio.Queue()
        # When set, pushed frames go to this callback (in the reader task, as each one is read)
        # instead of the queue behind next_push; the load tester uses it to timestamp receipts.
        self.on_push: Callable[[Frame], None] | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> ChatClient:
        ws = await websockets.connect(url, max_size=2**20, **kwargs)
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- raw frames ------------------------------------------------------------------

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data if isinstance(data, str) else data.decode())

    async def request(self, frame: Frame, *, timeout: float = 10.0) -> Frame:
        """Send a frame with a fresh ``ref`` and return its direct reply (error frames too)."""
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            try:
                await self.ws.send(_encode({**frame, "ref": ref}).decode())
            except websockets.ConnectionClosed as exc:
                raise ConnectionError(f"connection closed: {exc}") from exc
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(ref, None)

    async def call(self, frame: Frame, *, timeout: float = 10.0) -> Frame:
        """Like :meth:`request`, but an error frame raises :class:`ServerError`."""
        reply = await self.request(frame, timeout=timeout)
        if reply.get("type") == "error":
            raise ServerError(reply)
        return reply

    async def next_push(self, *, timeout: float = 10.0) -> Frame:
        """The next frame that is not a direct reply (a live message, a resync hint...)."""
        return await asyncio.wait_for(self._pushes.get(), timeout)

    @property
    def closed(self) -> bool:
        """True once the connection is gone (pending requests have failed)."""
        return self._reader.done()

    def pending_pushes(self) -> int:
        return self._pushes.qsize()

    # --- protocol verbs --------------------------------------------------------------

    async def register(self, username: str, email: str, password: str) -> Frame:
        reply = await self.call({"type": "register", "username": username, "email": email, "password": password})
        user: Frame = reply["user"]
        return user

    async def login(self, username: str, password: str) -> Frame:
        reply = await self.call({"type": "login", "username": username, "password": password})
        self.user, self.token = reply["user"], reply["token"]
        return reply

    async def auth(self, token: str) -> Frame:
        reply = await self.call({"type": "auth", "token": token})
        self.user, self.token = reply["user"], reply["token"]
        return reply

    async def open_dialog(self, username: str) -> Frame:
        reply = await self.call({"type": "open_dialog", "username": username})
        dialog: Frame = reply["dialog"]
        return dialog

    async def dialogs(self, *, limit: int | None = None, cursor: str | None = None) -> list[Frame]:
        return (await self.dialog_page(limit=limit, cursor=cursor))["dialogs"]  # type: ignore[no-any-return]

    async def dialog_page(self, *, limit: int | None = None, cursor: str | None = None) -> Frame:
        """The whole `dialogs` reply (its `next_cursor` too)."""
        frame: Frame = {"type": "dialogs"}
        if limit is not None:
            frame["limit"] = limit
        if cursor is not None:
            frame["cursor"] = cursor
        return await self.call(frame)

    async def typing(self, dialog_id: str) -> None:
        """Say that this user is typing (no reply: nothing comes back unless it fails later)."""
        await self.send_raw(_encode({"type": "typing", "dialog_id": dialog_id}))

    async def read(self, dialog_id: str, seq: int) -> Frame:
        """Mark the dialog read up to ``seq``; the reply carries the read mark now."""
        return await self.call({"type": "read", "dialog_id": dialog_id, "seq": seq})

    async def send(self, dialog_id: str, text: str, client_msg_id: str | None = None) -> Frame:
        reply = await self.call({
            "type": "send", "dialog_id": dialog_id, "text": text,
            "client_msg_id": client_msg_id or uuid.uuid4().hex,
        })
        message: Frame = reply["message"]
        return message

    async def history(self, dialog_id: str, *, before_seq: int | None = None, limit: int | None = None) -> list[Frame]:
        frame: Frame = {"type": "history", "dialog_id": dialog_id}
        if before_seq is not None:
            frame["before_seq"] = before_seq
        if limit is not None:
            frame["limit"] = limit
        reply = await self.call(frame)
        messages: list[Frame] = reply["messages"]
        return messages

    # --- reading ---------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                frame = _decode(data)
                ref = frame.get("ref")
                future = self._waiting.get(ref) if isinstance(ref, str) else None
                if future is not None and not future.done():
                    future.set_result(frame)
                elif self.on_push is not None:
                    self.on_push(frame)
                else:
                    self._pushes.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
