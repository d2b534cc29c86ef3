"""chat_service's request handlers: open_dialog, dialogs, send, history, sync, typing, read."""

from __future__ import annotations

import asyncpg
import msgspec

from chat_service import reads, store, typing
from chat_service.dialog_summary import dialog_page
from chat_service.history import HistoryReader
from chat_service.sequencer import FloorNeeded, Origin, Sequencer
from chatkit.db import CONNECTION_ERRORS
from chatkit.dialogs import BadDialogId, DialogKey
from chatkit.dispatch import FrameTable, Route
from chatkit.envelopes import Request
from chatkit.errors import RequestError, Unavailable
from chatkit.service import Outbox
from chatkit.settings import Settings
from chatkit.wire import (
    ChatFrame,
    DialogInfo,
    DialogReply,
    DialogsReply,
    History,
    HistoryReply,
    ListDialogs,
    Message,
    OpenDialog,
    Read,
    ReadEvent,
    Send,
    Sync,
    Synced,
    Typing,
    TypingEvent,
    UserRef,
)

# One sync reply carries at most this many messages, or about this many bytes of text (as
# the frame carries it), so that it stays a frame any client accepts; `more` tells the client
# to ask again.
SYNC_MAX_MESSAGES = 500
SYNC_MAX_TEXT = 256 * 1024

_encode_json = msgspec.json.Encoder().encode


def text_size(text: str) -> int:
    """What ``text`` weighs in the reply's JSON. Counted in characters, 4,096 four-byte ones
    (UTF-8) or escaped control characters (six bytes each) would pass for 4 KiB, and a reply
    could run to several times the documented cap."""
    return len(_encode_json(text)) - 2  # without the quotes


class SyncBatch:
    """The messages of one sync reply and where each dialog stands after it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.positions: dict[str, int] = {}
        self.more = False
        self._text = 0

    @property
    def room(self) -> int:
        return SYNC_MAX_MESSAGES - len(self.messages)

    @property
    def full(self) -> bool:
        return self.room <= 0 or self._text >= SYNC_MAX_TEXT

    def skip(self, dialog_id: str, seq: int) -> None:
        self.positions[dialog_id] = seq
        self.more = True

    def add(self, dialog_id: str, seq: int, messages: list[Message], snapshot: int | None, *, cut: bool) -> None:
        """Take a dialog's messages after `seq`; `cut` when the read hit its limit."""
        taken = []
        for message in messages:
            if self._text >= SYNC_MAX_TEXT:
                break
            taken.append(message)
            self._text += text_size(message.text)
        self.messages.extend(taken)
        if cut or len(taken) < len(messages):
            # Cut short: the client is complete only up to the last message it got.
            self.positions[dialog_id] = taken[-1].seq if taken else seq
            self.more = True
        else:
            top = snapshot if snapshot is not None else (messages[-1].seq if messages else seq)
            self.positions[dialog_id] = max(seq, top)


class ChatHandlers:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, sequencer: Sequencer, reader: HistoryReader) -> None:
        self.settings = settings
        self.pool = pool
        self.sequencer = sequencer
        self.reader = reader
        self.routes = FrameTable(
            "chat_service", ChatFrame,
            Route(OpenDialog, self.open_dialog),
            Route(ListDialogs, self.list_dialogs),
            Route(Send, self.send),
            Route(History, self.history),
            Route(Sync, self.sync),
            Route(Typing, self.typing),
            Route(Read, self.read),
        )

    async def handle(self, request: Request, outbox: Outbox) -> None:
        user = request.user
        if user is None:
            raise RequestError("unauthenticated", "log in first")
        frame = request.frame
        try:
            await self.routes.handler(frame)(frame, user, request, outbox)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"database unreachable ({type(exc).__name__})") from exc

    async def send(self, frame: Send, user: UserRef, request: Request, outbox: Outbox) -> None:
        key = self._member_key(user, frame.dialog_id)
        text = frame.text.strip()
        if not text:
            raise RequestError("invalid", "text: expected 1 or more characters after trimming, got none")
        if len(text) > self.settings.max_text_length:
            raise RequestError(
                "invalid",
                f"text: expected at most {self.settings.max_text_length} characters, got {len(text)}",
            )
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL: such a message would be sent but never stored.
            raise RequestError("invalid", "text: expected no NUL (U+0000) characters")
        origin = Origin(
            gateway=request.gateway, conn=request.conn, ref=frame.ref, entry_id=outbox.entry_id, stream=outbox.stream,
            request=request.request,
        )
        try:
            await self.sequencer.accept(key, user, text, frame.client_msg_id, origin)
        except FloorNeeded:
            # Redis has no counter for this dialog: either it was never opened, or Redis lost
            # it; the database knows which, and where numbering stopped.
            if not await store.dialog_exists(self.pool, key):
                raise RequestError("not_member", f"no dialog {frame.dialog_id!r} of yours") from None
            floor = await store.last_stored_seq(self.pool, key)
            await self.sequencer.accept(key, user, text, frame.client_msg_id, origin, floor=floor)
        # The script published the `sent` reply and acknowledged the request.
        outbox.answered = True

    async def open_dialog(self, frame: OpenDialog, user: UserRef, request: Request, outbox: Outbox) -> None:
        if "\x00" in frame.username:
            # PostgreSQL refuses NUL in a query parameter; the request would fail until dead-lettered.
            raise RequestError("invalid", "username: expected no NUL (U+0000) characters")
        peer = await store.find_user(self.pool, frame.username)
        if peer is None:
            raise RequestError("no_such_user", f"no user named {frame.username!r}")
        if peer.id == user.id:
            raise RequestError("invalid", "username: expected another user, got yourself")
        opened = await store.open_dialog(self.pool, user.id, peer)
        await self.sequencer.mark_open(opened.key)
        info = DialogInfo(id=opened.key.id, peer=opened.peer, created=opened.created)
        outbox.reply(DialogReply(dialog=info))

    async def list_dialogs(self, frame: ListDialogs, user: UserRef, request: Request, outbox: Outbox) -> None:
        dialogs, next_cursor = await dialog_page(
            self.pool, self.sequencer.pipeline, self.sequencer.partitions, user.id, limit=frame.limit,
            cursor=frame.cursor,
        )
        outbox.reply(DialogsReply(dialogs=dialogs, next_cursor=next_cursor))

    async def typing(self, frame: Typing, user: UserRef, request: Request, outbox: Outbox) -> None:
        """No reply unless the frame has a ref; a shut rate gate drops it silently."""
        key = self._member_key(user, frame.dialog_id)
        redis = self.sequencer.pipeline
        per_second = self.settings.typing_per_second
        try:
            await typing.forward(redis, self.sequencer.partitions, key, user.id, request.conn, per_second)
        except typing.Unknown:
            if not await store.dialog_exists(self.pool, key):
                raise RequestError("not_member", f"no dialog {frame.dialog_id!r} of yours") from None
            await typing.forward(redis, self.sequencer.partitions, key, user.id, request.conn, per_second, known=True)
        if frame.ref is not None:
            outbox.reply(TypingEvent(dialog_id=key.id, user_id=user.id))

    async def read(self, frame: Read, user: UserRef, request: Request, outbox: Outbox) -> None:
        key = self._member_key(user, frame.dialog_id)
        mark, moved = await reads.mark_read(
            self.pool, self.sequencer.pipeline, self.sequencer.partitions, key, user.id, frame.seq
        )
        event = ReadEvent(dialog_id=key.id, user_id=user.id, seq=mark)
        outbox.reply(event)
        if moved:
            outbox.to_user(key.peer_of(user.id), ReadEvent(dialog_id=key.id, user_id=user.id, seq=mark))
            outbox.to_user(user.id, ReadEvent(dialog_id=key.id, user_id=user.id, seq=mark), skip_own=True)

    async def history(self, frame: History, user: UserRef, request: Request, outbox: Outbox) -> None:
        key = self._member_key(user, frame.dialog_id)
        limit = min(frame.limit or self.settings.history_default_limit, self.settings.history_max_limit)
        if not await store.dialog_exists(self.pool, key):
            raise RequestError("not_member", f"no dialog {frame.dialog_id!r} of yours")
        messages = await self.reader.page(key, before=frame.before_seq, limit=limit)
        outbox.reply(HistoryReply(dialog_id=key.id, messages=messages))

    async def sync(self, frame: Sync, user: UserRef, request: Request, outbox: Outbox) -> None:
        wanted = await self._sync_positions(user, frame)
        batch = SyncBatch()
        for dialog_id, seq in sorted(wanted.items()):
            if batch.full:
                batch.skip(dialog_id, seq)
                continue
            key = DialogKey.parse(dialog_id)
            limit = batch.room
            messages, snapshot = await self.reader.after(key, after=seq, limit=limit)
            batch.add(dialog_id, seq, messages, snapshot, cut=len(messages) >= limit)
        marks = await reads.marks(self.pool, [DialogKey.parse(d) for d in batch.positions])
        outbox.reply(
            Synced(messages=batch.messages, dialogs=batch.positions, more=batch.more, reads=marks),
            positions=batch.positions,
        )

    async def _sync_positions(self, user: UserRef, frame: Sync) -> dict[str, int]:
        """dialog id -> seq the client has, for the dialogs it asked about (all by default)."""
        peers = {peer.id for peer in await store.list_dialogs(self.pool, user.id)}
        if frame.dialogs is None:
            return {DialogKey.of(user.id, peer).id: 0 for peer in peers}
        wanted: dict[str, int] = {}
        for dialog_id, seq in frame.dialogs.items():
            key = self._member_key(user, dialog_id)
            if key.peer_of(user.id) not in peers:
                raise RequestError("not_member", f"no dialog {dialog_id!r} of yours")
            wanted[key.id] = seq
        return wanted

    @staticmethod
    def _member_key(user: UserRef, dialog_id: str) -> DialogKey:
        try:
            key = DialogKey.parse(dialog_id)
        except BadDialogId as exc:
            raise RequestError("invalid", f"dialog_id: {exc}") from None
        if not key.has(user.id):
            raise RequestError("not_member", f"you are not in dialog {dialog_id!r}")
        return key

