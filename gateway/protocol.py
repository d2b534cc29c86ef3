"""The gateway's side of the wire protocol, as pure code: a text frame in, either a typed
request to forward (and to which service) or an error frame to send back. No sockets here.

Before login only register, login and auth are accepted."""

from __future__ import annotations

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
from gateway.explain import describe, field_message

_decode_frame = msgspec.json.Decoder(ClientFrame).decode
_decode_any = msgspec.json.Decoder(Any).decode
_encode = msgspec.json.Encoder().encode



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
        return Reject(error_frame(exc.code, exc.message, ref=salvage_ref(data)))
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
        detail = str(exc)
    except msgspec.DecodeError as exc:
        raise RequestError("bad_frame", f"expected one JSON object, got invalid JSON ({exc})") from None
    except RecursionError:
        raise _too_deep() from None
    else:
        return frame
    try:
        explained = _explain(data, detail)
    except RecursionError:  # valid up to a depth the frame's schema never looked into
        raise _too_deep() from None
    except msgspec.DecodeError as exc:
        # The typed decoder stopped at a misfit before reaching what makes it invalid JSON
        # ('{"type":"sync","dialogs":[' ends early, after the array that does not fit).
        raise RequestError("bad_frame", f"expected one JSON object, got invalid JSON ({exc})") from None
    raise explained


def _too_deep() -> RequestError:
    return RequestError("bad_frame", "expected a JSON object of a few levels, got one nested too deep")


def error_frame(code: str, message: str, *, ref: str | None = None, retry_after_ms: int | None = None) -> bytes:
    return _encode(Error(ref=ref, code=code, message=message, retry_after_ms=retry_after_ms))


def rate_limited(what: str, retry_after_ms: int, ref: str | None) -> bytes:
    """The answer to a request over a limit: code `rate_limited`, and when to try again."""
    return error_frame(
        "rate_limited", f"too many {what}; try again in {retry_after_ms} ms", ref=ref, retry_after_ms=retry_after_ms
    )


def _explain(data: str | bytes, detail: str) -> RequestError:
    raw = _decode_any(data)
    if not isinstance(raw, dict):
        return RequestError("bad_frame", f"expected a JSON object, got {describe(raw)}")
    if "type" not in raw:
        return RequestError("bad_frame", "type: expected a string, got nothing")
    kind = raw["type"]
    if not isinstance(kind, str):
        return RequestError("bad_frame", f"type: expected a string, got {describe(kind)}")
    if kind not in CLIENT_FRAME_TYPES:
        expected = ", ".join(repr(t) for t in CLIENT_FRAME_TYPES)
        return RequestError("unknown_type", f"type: expected one of {expected}; got {_encode(kind[:40]).decode()}")
    return RequestError("invalid", field_message(detail, raw))


def salvage_ref(data: str | bytes) -> str | None:
    # An invalid frame still gets its ref echoed when the ref itself is usable.
    try:
        raw = _decode_any(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    ref = raw.get("ref") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 64 else None
