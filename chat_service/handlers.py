"""chat_service's request handlers: open_dialog, dialogs, send, history, sync."""

from __future__ import annotations

import asyncpg

from chat_service import store
from chat_service.history import HistoryReader
from chat_service.sequencer import FloorNeeded, Sequencer
from chatkit.db import CONNECTION_ERRORS
from chatkit.dialogs import BadDialogId, DialogKey
from chatkit.envelopes import Request
from chatkit.errors import RequestError, Unavailable
from chatkit.service import Outbox
from chatkit.settings import Settings
from chatkit.wire import (
    DialogInfo,
    DialogReply,
    DialogsReply,
    History,
    HistoryReply,
    ListDialogs,
    OpenDialog,
    Send,
    Sent,
    Sync,
    Synced,
    UserRef,
)


class ChatHandlers:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, sequencer: Sequencer, reader: HistoryReader) -> None:
        self.settings = settings
        self.pool = pool
        self.sequencer = sequencer
        self.reader = reader

    async def handle(self, request: Request, outbox: Outbox) -> None:
        user = request.user
        if user is None:
            raise RequestError("unauthenticated", "log in first")
        frame = request.frame
        try:
            if isinstance(frame, Send):
                await self.send(user, frame, request.conn, outbox)
            elif isinstance(frame, OpenDialog):
                await self.open_dialog(user, frame, outbox)
            elif isinstance(frame, ListDialogs):
                await self.list_dialogs(user, outbox)
            elif isinstance(frame, History):
                await self.history(user, frame, outbox)
            elif isinstance(frame, Sync):
                await self.sync(user, frame, outbox)
            else:
                raise RequestError("unknown_type", f"chat_service does not handle {type(frame).__name__}")
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"database unreachable ({type(exc).__name__})") from exc

    async def send(self, user: UserRef, frame: Send, conn: str, outbox: Outbox) -> None:
        key = self._member_key(user, frame.dialog_id)
        text = frame.text.strip()
        if not text:
            raise RequestError("invalid", "text: expected 1 or more characters after trimming, got none")
        if len(text) > self.settings.max_text_length:
            raise RequestError(
                "invalid",
                f"text: expected at most {self.settings.max_text_length} characters, got {len(text)}",
            )
        try:
            accepted = await self.sequencer.accept(key, user, text, frame.client_msg_id, skip_conn=conn)
        except FloorNeeded:
            # Redis has no counter for this dialog: either it was never opened, or Redis lost
            # it; the database knows which, and where numbering stopped.
            if not await store.dialog_exists(self.pool, key):
                raise RequestError("not_member", f"no dialog {frame.dialog_id!r} of yours") from None
            floor = await store.last_stored_seq(self.pool, key)
            accepted = await self.sequencer.accept(
                key, user, text, frame.client_msg_id, skip_conn=conn, floor=floor
            )
        outbox.reply(Sent(client_msg_id=frame.client_msg_id, message=accepted.message))

    async def open_dialog(self, user: UserRef, frame: OpenDialog, outbox: Outbox) -> None:
        peer = await store.find_user(self.pool, frame.username)
        if peer is None:
            raise RequestError("no_such_user", f"no user named {frame.username!r}")
        if peer.id == user.id:
            raise RequestError("invalid", "username: expected another user, got yourself")
        opened = await store.open_dialog(self.pool, user.id, peer)
        await self.sequencer.mark_open(opened.key)
        info = DialogInfo(id=opened.key.id, peer=opened.peer, created=opened.created)
        outbox.reply(DialogReply(dialog=info))

    async def list_dialogs(self, user: UserRef, outbox: Outbox) -> None:
        peers = await store.list_dialogs(self.pool, user.id)
        dialogs = [DialogInfo(id=DialogKey.of(user.id, peer.id).id, peer=peer) for peer in peers]
        outbox.reply(DialogsReply(dialogs=dialogs))

    async def history(self, user: UserRef, frame: History, outbox: Outbox) -> None:
        key = self._member_key(user, frame.dialog_id)
        limit = min(frame.limit or self.settings.history_default_limit, self.settings.history_max_limit)
        if not await store.dialog_exists(self.pool, key):
            raise RequestError("not_member", f"no dialog {frame.dialog_id!r} of yours")
        messages = await self.reader.page(key, before=frame.before_seq, limit=limit)
        outbox.reply(HistoryReply(dialog_id=key.id, messages=messages))

    async def sync(self, user: UserRef, frame: Sync, outbox: Outbox) -> None:
        raise RequestError("invalid", "sync: not available yet")

    @staticmethod
    def _member_key(user: UserRef, dialog_id: str) -> DialogKey:
        try:
            key = DialogKey.parse(dialog_id)
        except BadDialogId as exc:
            raise RequestError("invalid", f"dialog_id: {exc}") from None
        if not key.has(user.id):
            raise RequestError("not_member", f"you are not in dialog {dialog_id!r}")
        return key


_ = Synced  # used by sync once it lands
