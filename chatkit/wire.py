"""The client wire protocol, v1 (docs/PROTOCOL.md): every frame a client may send and every
frame the server sends, as msgspec structs. Text frames, one JSON object each, told apart by
their string ``type``. Fields may be added in later versions; none is renamed.

Validation happens once, at the gateway, when a frame is decoded into :data:`ClientFrame`;
handlers only ever see these typed objects.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

Ref = Annotated[str, msgspec.Meta(max_length=64)]
Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Email = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
# The token and dialog id are checked for meaning by the service; here only for size.
Token = Annotated[str, msgspec.Meta(max_length=2048)]
DialogId = Annotated[str, msgspec.Meta(max_length=64)]
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Counts fit PostgreSQL's bigint: a larger number would fail in the database, not here.
BIGINT_MAX = 2**63 - 1
Seq = Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)]
# Text length is checked after trimming, against a configurable bound, by chat_service;
# this bound only stops absurd frames early.
Text = Annotated[str, msgspec.Meta(max_length=65536)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]


class Frame(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every client frame: a request may carry ``ref``, echoed in the direct reply."""

    ref: Ref | None = None


# --- client → server -------------------------------------------------------------------


class Register(Frame, tag="register"):
    username: Username
    email: Email
    password: Password


class Login(Frame, tag="login"):
    username: Annotated[str, msgspec.Meta(max_length=255)]
    password: Annotated[str, msgspec.Meta(max_length=256)]


class Auth(Frame, tag="auth"):
    token: Token


class Rename(Frame, tag="rename"):
    username: Username


class Logout(Frame, tag="logout"):
    """End this connection's session (its token stops working on every gateway), or with
    ``everywhere`` every session of the user."""

    everywhere: bool = False


class OpenDialog(Frame, tag="open_dialog"):
    username: Annotated[str, msgspec.Meta(max_length=255)]


Cursor = Annotated[str, msgspec.Meta(max_length=64)]


class ListDialogs(Frame, tag="dialogs"):
    # Default and cap 100 (chat_service.dialog_summary). The cursor is a reply's `next_cursor`.
    limit: Limit | None = None
    cursor: Cursor | None = None


class Send(Frame, tag="send"):
    dialog_id: DialogId
    text: Text
    client_msg_id: ClientMsgId


class History(Frame, tag="history"):
    dialog_id: DialogId
    before_seq: Seq | None = None
    limit: Limit | None = None


class Sync(Frame, tag="sync"):
    dialogs: dict[DialogId, Seq] | None = None


class Typing(Frame, tag="typing"):
    dialog_id: DialogId


class Read(Frame, tag="read"):
    dialog_id: DialogId
    seq: Seq


# Which service handles a frame, and whether it needs a logged-in connection, is said here
# once, by these unions; the gateway's routing sets and each service's dispatch table derive
# from them.
# Frames accepted before the connection belongs to a user.
AnonymousFrame = Register | Login | Auth
# Frames handled by auth_service.
AuthFrame = AnonymousFrame | Rename | Logout
# Frames handled by chat_service.
ChatFrame = OpenDialog | ListDialogs | Send | History | Sync | Typing | Read
ClientFrame = AuthFrame | ChatFrame


def frame_classes(union: Any) -> tuple[type[Frame], ...]:
    """The frame structs of a union of them (or of one struct), in the union's order."""
    members = typing.get_args(union) or (union,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Frame)):
            raise TypeError(f"expected a union of client frame structs, got {member!r} in {union!r}")
    return members


def frame_tag(frame: type[Frame] | Frame) -> str:
    """A frame struct's ``type`` on the wire."""
    tag = frame.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"expected a frame struct with a string tag, got {frame!r} tagged {tag!r}")
    return tag


def frame_tags(union: Any) -> tuple[str, ...]:
    """The ``type`` of each frame of a union, in the union's order."""
    return tuple(frame_tag(member) for member in frame_classes(union))


CLIENT_FRAME_TYPES = frame_tags(ClientFrame)
ANONYMOUS_FRAME_TYPES = frozenset(frame_tags(AnonymousFrame))
AUTH_FRAME_TYPES = frozenset(frame_tags(AuthFrame))

# --- server → client -------------------------------------------------------------------


class UserRef(msgspec.Struct):
    id: int
    username: str


class UserInfo(msgspec.Struct):
    id: int
    username: str
    email: str


def wire_time(when: datetime) -> str:
    """A moment as the wire writes it (``sent_at``): ISO 8601 in UTC, milliseconds, "Z" for the
    offset, e.g. ``2026-11-27T13:44:03.123Z``."""
    if when.tzinfo is not UTC:
        if when.tzinfo is None:
            raise ValueError(f"expected a datetime with a time zone, got a naive one ({when.isoformat()})")
        when = when.astimezone(UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Message(msgspec.Struct):
    id: str
    dialog_id: str
    seq: int
    sender: UserRef
    text: str
    sent_at: str


class DialogInfo(msgspec.Struct, omit_defaults=True):
    id: str
    peer: UserRef
    created: bool | None = None


class Peer(msgspec.Struct, omit_defaults=True):
    """A dialog's other member, as the dialog list shows them."""

    id: int
    username: str
    online: bool | None = None


class DialogSummary(msgspec.Struct):
    """One dialog of the `dialogs` list: ``unread`` counts the peer's messages above the
    caller's read mark; ``reads`` is each member's read mark (user id as a string -> seq)."""

    id: str
    peer: Peer
    last_message: Message | None
    unread: int
    reads: dict[str, int]


class Reply(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every server frame; ``ref`` is set on direct replies to a request that had one."""

    ref: str | None = None


class Registered(Reply, tag="registered"):
    user: UserInfo


class LoggedIn(Reply, tag="logged_in"):
    token: str
    user: UserRef


class LoggedOut(Reply, tag="logged_out"):
    pass


class Renamed(Reply, tag="renamed"):
    user: UserRef


class DialogReply(Reply, tag="dialog"):
    dialog: DialogInfo


class DialogsReply(Reply, tag="dialogs"):
    dialogs: list[DialogSummary]
    # Set when more dialogs follow: pass it as `cursor` for the next page.
    next_cursor: str | None = None


class Sent(Reply, tag="sent"):
    client_msg_id: str
    message: Message


class HistoryReply(Reply, tag="history"):
    dialog_id: str
    messages: list[Message]


class Synced(Reply, tag="synced"):
    # Every message after the positions the client gave, oldest first within each dialog.
    messages: list[Message]
    # dialog id -> the seq up to which the client is now complete.
    dialogs: dict[str, int]
    # True when the reply was cut short: send `sync` again with these positions for the rest.
    more: bool = False
    # dialog id -> each member's read mark (user id as a string -> seq), for the dialogs above.
    reads: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


class MessageEvent(Reply, tag="message"):
    message: Message


class Resync(Reply, tag="resync"):
    """Sent by a gateway that may have missed live events: the client should `sync`."""

    reason: str


class TypingEvent(Reply, tag="typing"):
    """Pushed (at most once, never stored): ``user_id`` is typing in ``dialog_id``."""

    dialog_id: str
    user_id: int


class ReadEvent(Reply, tag="read"):
    """``user_id`` has read ``dialog_id`` up to ``seq``; also the direct reply to `read`."""

    dialog_id: str
    user_id: int
    seq: int


class PresenceEvent(Reply, tag="presence"):
    """Pushed (at most once, never stored): a dialog peer came online or went offline."""

    user_id: int
    online: bool


class UserChanged(Reply, tag="user"):
    """Pushed: a dialog peer was renamed."""

    user: UserRef


class Error(Reply, tag="error"):
    code: str
    message: str
    # Set on `rate_limited`: how long to wait before the request can succeed.
    retry_after_ms: int | None = None


ServerFrame = (
    Registered | LoggedIn | LoggedOut | Renamed | DialogReply | DialogsReply | Sent | HistoryReply | Synced
    | MessageEvent | Resync | TypingEvent | ReadEvent | PresenceEvent | UserChanged | Error
)
