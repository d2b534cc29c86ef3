"""The gateway's side of the wire protocol, as pure code: a text frame in, either a typed
request to forward (and to which service) or an error frame to send back. No sockets here.

Before login only register, login and auth are accepted."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec

from chatkit import keys
from chatkit.dialogs import BadDialogId, DialogKey
from chatkit.errors import RequestError
from chatkit.partitions import Partitions
from chatkit.wire import (
    ANONYMOUS_FRAME_TYPES,
    AUTH_FRAME_TYPES,
    CLIENT_FRAME_TYPES,
    ClientFrame,
    Error,
    Send,
    UserRef,
    frame_tag,
)

_decode_frame = msgspec.json.Decoder(ClientFrame).decode
_decode_any = msgspec.json.Decoder(Any).decode
_encode = msgspec.json.Encoder().encode

# What a person should be told a field must look like, where msgspec would quote a regex.
_FIELD_RULES = {
    "username": "3 to 32 letters, digits, '_', '.' or '-'",
    "email": "an address like name@example.org",
}
_AT_FIELD = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


@dataclass(frozen=True, slots=True)
class Forward:
    """Send this request to the service reading ``stream``."""

    stream: str
    frame: ClientFrame


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the client with this error frame (already encoded)."""

    frame: bytes


def route(data: str | bytes, user: UserRef | None, partitions: Partitions) -> Forward | Reject:
    """Decide what to do with one text frame from a connection owned by ``user`` (or no one),
    and which partition of the service's request stream takes it."""
    try:
        frame = parse(data)
    except RequestError as exc:
        return Reject(error_frame(exc.code, exc.message, ref=_salvage_ref(data)))
    kind = frame_tag(frame)
    if user is None and kind not in ANONYMOUS_FRAME_TYPES:
        return Reject(error_frame("unauthenticated", f"log in first: {kind!r} needs a logged-in connection",
                                  ref=frame.ref))
    tag = partitions.tag(request_partition(frame, user, data, partitions))
    stream = keys.auth_requests(tag) if kind in AUTH_FRAME_TYPES else keys.chat_requests(tag)
    return Forward(stream, frame)


def request_partition(frame: ClientFrame, user: UserRef | None, data: str | bytes, partitions: Partitions) -> int:
    """A send goes to its dialog's partition (accept.lua acknowledges it in the dialog's slot);
    any other request to its user's, and one before login to a partition its bytes pick."""
    if isinstance(frame, Send):
        try:
            return partitions.of_dialog(DialogKey.parse(frame.dialog_id))
        except BadDialogId:
            pass  # refused by chat_service, from any partition
    if user is not None:
        return partitions.of_user(user.id)
    return zlib.crc32(data.encode() if isinstance(data, str) else data) % partitions.count


def parse(data: str | bytes) -> ClientFrame:
    """Decode and validate one frame, or raise RequestError naming what was wrong."""
    try:
        frame: ClientFrame = _decode_frame(data)
    except msgspec.ValidationError as exc:
        raise _explain(data, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RequestError("bad_frame", f"expected one JSON object, got invalid JSON ({exc})") from None
    return frame


def error_frame(code: str, message: str, *, ref: str | None = None) -> bytes:
    return _encode(Error(ref=ref, code=code, message=message))


def _explain(data: str | bytes, detail: str) -> RequestError:
    raw = _decode_any(data)
    if not isinstance(raw, dict):
        return RequestError("bad_frame", f"expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("type")
    if not isinstance(kind, str):
        return RequestError("bad_frame", f"expected a string 'type', got {kind!r}")
    if kind not in CLIENT_FRAME_TYPES:
        expected = ", ".join(repr(t) for t in CLIENT_FRAME_TYPES)
        return RequestError("unknown_type", f"expected one of {expected}; got {kind!r}")
    match = _AT_FIELD.search(detail)
    if match is None:
        # "Object missing required field `text`" names the field itself.
        return RequestError("invalid", f"{kind}: {detail[:1].lower()}{detail[1:]}")
    path = match.group("path")
    field = path.split("[", 1)[0].split(".", 1)[0]
    reason = detail[: match.start()]
    if "regex" in reason and field in _FIELD_RULES:
        reason = f"expected {_FIELD_RULES[field]}"
    return RequestError("invalid", f"{path}: {reason[:1].lower()}{reason[1:]}")


def _salvage_ref(data: str | bytes) -> str | None:
    # An invalid frame still gets its ref echoed when the ref itself is usable.
    try:
        raw = _decode_any(data)
    except msgspec.DecodeError:
        return None
    ref = raw.get("ref") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 64 else None
