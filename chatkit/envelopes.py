"""What travels between the services over Redis (the broker schemas).

A client frame goes to a service as a :class:`Request` on a request stream; the service
answers the one connection with a :class:`ConnReply` on its gateway's channel, and tells
every connection of a user with a :class:`UserEvent` on that user's channel. Server frames
travel pre-encoded (``msgspec.Raw``) so a gateway forwards them without re-encoding.
"""

from __future__ import annotations

import msgspec

from chatkit.wire import ClientFrame, UserRef

# Field name of the one field in every stream entry.
ENTRY_FIELD = b"e"


class Request(msgspec.Struct, kw_only=True):
    gateway: str
    # Connection id, unique across all gateways.
    conn: str
    # Whom the connection belongs to; None before login.
    user: UserRef | None = None
    frame: ClientFrame
    # The gateway's number for this request (unique on that gateway, never 0); its reply says
    # it back, so a reply that comes past the request's deadline is recognised and dropped.
    request: int = 0


class ConnReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    conn: str
    frame: msgspec.Raw
    # Set on a successful login or auth: the connection now belongs to this user.
    login: UserRef | None = None
    # Set on a rename: the connection's user is now called this.
    identity: UserRef | None = None
    # Set on a sync reply: dialog id -> seq the client is now complete up to. Live messages
    # the gateway held back meanwhile are released only above these.
    positions: dict[str, int] | None = None
    # The type of the request this answers ("sync", "send", ...), error replies included.
    answers: str | None = None
    # The Request.request this answers (0: none given).
    request: int = 0


class UserEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    frame: msgspec.Raw
    # The connection that already got this as a direct reply, and must not get it twice.
    skip_conn: str | None = None
    # Set when the user was renamed: gateways update every connection of the user.
    identity: UserRef | None = None
    # Set on message events: which dialog and seq the frame carries.
    dialog_id: str | None = None
    seq: int | None = None
    # Worthless once late (typing, presence): never queued behind a slow connection's backlog.
    ephemeral: bool = False


# The messages stream carries each accepted message as its wire form (chatkit.wire.Message)
# under ENTRY_FIELD, so the storage worker and `sync` read the same bytes clients get.
