"""The bytes a send publishes, built from the schemas: accept.lua joins them around the message
and its seq, which only the script knows. Each envelope is encoded once, at import, with
placeholders (chatkit.template), and cut there; per send only the values that vary are encoded.

    message  wire.Message                                              the stream entry, the
             <message_before_seq> seq <message_after_seq>              pending set
    event    envelopes.UserEvent(frame=wire.MessageEvent(message),     both users' channels
             skip_conn, dialog_id, seq)
             <EVENT_BEFORE_MESSAGE> message <event_before_seq> seq <EVENT_AFTER_SEQ>
    reply    envelopes.ConnReply(conn, frame=wire.Sent(client_msg_id,  the sender's gateway
             message, ref), answers="send", request)                   channel
             <reply_before_message> message <reply_after_message>

A field added to one of these structs is written by msgspec into the pieces; a field of Message
that this module does not fill stops the import (tests/test_send_frames.py decodes what the
script publishes back into these types).
"""

from __future__ import annotations

import msgspec

from chatkit.envelopes import ConnReply, UserEvent
from chatkit.template import cut, placeholder
from chatkit.wire import Message, MessageEvent, Send, Sent, UserRef, frame_tag

_encode = msgspec.json.Encoder().encode

# Placeholders (chatkit.template): strings, and ints no other field holds.
_ID = placeholder("id")
_DIALOG = placeholder("dialog_id")
_SEQ = -9_000_000_000_000_001
_SENDER = UserRef(id=-9_000_000_000_000_002, username=placeholder("sender"))
_TEXT = placeholder("text")
_SENT_AT = placeholder("sent_at")
_CONN = placeholder("conn")
_CLIENT_MSG_ID = placeholder("client_msg_id")
_REF = placeholder("ref")
_REQUEST = -9_000_000_000_000_003
# The whole message, in the envelopes that carry it.
_MESSAGE = Message(id=placeholder("message"), dialog_id="", seq=0, sender=UserRef(id=0, username=""), text="",
                   sent_at="")

_FILLED = {"id", "dialog_id", "seq", "sender", "text", "sent_at"}
if set(Message.__struct_fields__) != _FILLED:
    raise TypeError(
        f"chat_service/send_frames.py fills Message fields {sorted(_FILLED)}, but Message has "
        f"{list(Message.__struct_fields__)}: give every field a placeholder and a value here"
    )

_M_ID, _M_DIALOG, _M_SEQ, _M_SENDER, _M_TEXT, _M_SENT_AT, _M_END = cut(
    _encode(Message(id=_ID, dialog_id=_DIALOG, seq=_SEQ, sender=_SENDER, text=_TEXT, sent_at=_SENT_AT)),
    *map(_encode, (_ID, _DIALOG, _SEQ, _SENDER, _TEXT, _SENT_AT)),
)

EVENT_BEFORE_MESSAGE, _E_CONN, _E_DIALOG, _E_SEQ, EVENT_AFTER_SEQ = cut(
    _encode(UserEvent(
        frame=msgspec.Raw(_encode(MessageEvent(message=_MESSAGE))), skip_conn=_CONN, dialog_id=_DIALOG, seq=_SEQ,
    )),
    *map(_encode, (_MESSAGE, _CONN, _DIALOG, _SEQ)),
)


def _reply_pieces(ref: str | None) -> tuple[bytes, ...]:
    sent = Sent(client_msg_id=_CLIENT_MSG_ID, message=_MESSAGE, ref=ref)
    reply = ConnReply(conn=_CONN, frame=msgspec.Raw(_encode(sent)), answers=frame_tag(Send), request=_REQUEST)
    marks = (_CONN, _CLIENT_MSG_ID, _MESSAGE) if ref is None else (_CONN, _CLIENT_MSG_ID, _MESSAGE, _REF)
    return cut(_encode(reply), *map(_encode, (*marks, _REQUEST)))


# A reply without a ref has none in its frame (omit_defaults), so it has pieces of its own. The
# request number is always written (a 0 as well: it decodes the same as an omitted one).
_R_CONN, _R_CLIENT_MSG_ID, _R_MESSAGE, _R_REQUEST, _R_END = _reply_pieces(None)
_RR_CONN, _RR_CLIENT_MSG_ID, _RR_MESSAGE, _RR_REF, _RR_REQUEST, _RR_END = _reply_pieces(_REF)


def send_pieces(
    message_id: str, dialog_id: str, sender: UserRef, text: str, sent_at: str,
    conn: str, client_msg_id: str, ref: str | None, request: int = 0,
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """What varies between sends, encoded: message_before_seq, message_after_seq,
    event_before_seq, reply_before_message, reply_after_message (accept.lua's names). A plain
    tuple: a NamedTuple would cost more per send than the joins below."""
    dialog = _encode(dialog_id)
    conn_json = _encode(conn)
    if ref is None:
        reply_before = b"".join((_R_CONN, conn_json, _R_CLIENT_MSG_ID, _encode(client_msg_id), _R_MESSAGE))
        reply_after = b"".join((_R_REQUEST, _encode(request), _R_END))
    else:
        reply_before = b"".join((_RR_CONN, conn_json, _RR_CLIENT_MSG_ID, _encode(client_msg_id), _RR_MESSAGE))
        reply_after = b"".join((_RR_REF, _encode(ref), _RR_REQUEST, _encode(request), _RR_END))
    return (
        b"".join((_M_ID, _encode(message_id), _M_DIALOG, dialog, _M_SEQ)),
        b"".join((_M_SENDER, _encode(sender), _M_TEXT, _encode(text), _M_SENT_AT, _encode(sent_at), _M_END)),
        b"".join((_E_CONN, conn_json, _E_DIALOG, dialog, _E_SEQ)),
        reply_before,
        reply_after,
    )
