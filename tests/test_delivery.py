"""gateway.delivery.DeliveryState, pure: live events and sync replies in, the frames one
connection is to be written out (or the overflow signal), with no socket anywhere."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from chatkit.wire import Error, Message, MessageEvent, Synced, UserRef
from gateway.connections import Connection
from gateway.delivery import LIVE_SEQS_KEPT, DeliveryState, Verdict
from gateway.relay import deliver_live, deliver_sync_reply, sync_started

DIALOG = "d1"
OTHER = "d2"
PEER = UserRef(id=2, username="bob")
_encode = msgspec.json.Encoder().encode


def message(seq: int, dialog_id: str = DIALOG) -> Message:
    return Message(id=f"m{dialog_id}{seq}", dialog_id=dialog_id, seq=seq, sender=PEER, text=f"#{seq}",
                   sent_at="2026-01-01T00:00:00.000Z")


def event(seq: int, dialog_id: str = DIALOG) -> tuple[bytes, str, int]:
    return _encode(MessageEvent(message=message(seq, dialog_id))), dialog_id, seq


def synced(*seqs: int, dialog_id: str = DIALOG, upto: int | None = None) -> tuple[bytes, dict[str, int]]:
    position = upto if upto is not None else max(seqs, default=0)
    frame = _encode(Synced(ref="s", messages=[message(s, dialog_id) for s in seqs], dialogs={dialog_id: position}))
    return frame, {dialog_id: position}


def seqs_in(frames: list[bytes]) -> list[int]:
    """The message seqs the frames carry, in the order the client would read them."""
    out: list[int] = []
    for frame in frames:
        decoded = msgspec.json.decode(frame)
        if decoded["type"] == "synced":
            out.extend(m["seq"] for m in decoded["messages"])
        elif decoded["type"] == "message":
            out.append(decoded["message"]["seq"])
    return out


def test_a_live_event_goes_out_once() -> None:
    state = DeliveryState(hold_limit=8)
    assert state.live(*event(1)) is Verdict.SEND
    assert state.live(*event(1)) is Verdict.DUPLICATE
    assert state.live(*event(1, OTHER)) is Verdict.SEND  # another dialog's seq 1 is another message
    assert state.live(*event(2)) is Verdict.SEND


def test_an_event_of_no_dialog_is_always_sent() -> None:
    state = DeliveryState(hold_limit=8)
    frame = b'{"type":"dialog"}'
    assert state.live(frame, None, None) is Verdict.SEND
    assert state.live(frame, None, None) is Verdict.SEND


def test_a_sync_reply_leaves_out_what_came_live() -> None:
    state = DeliveryState(hold_limit=8)
    for seq in (3, 5):
        assert state.live(*event(seq)) is Verdict.SEND
    state.begin_sync()
    frames = state.sync_reply(*synced(1, 2, 3, 4, 5))
    assert seqs_in(frames) == [1, 2, 4]
    # Complete up to 5 now: nothing at or below it again, live or in a later sync.
    assert state.live(*event(4)) is Verdict.DUPLICATE
    assert state.live(*event(6)) is Verdict.SEND
    state.begin_sync()
    assert seqs_in(state.sync_reply(*synced(5, 6, 7))) == [7]


def test_events_during_a_sync_are_held_and_follow_its_reply_without_repeats() -> None:
    state = DeliveryState(hold_limit=8)
    state.begin_sync()
    assert state.syncing
    for seq in (4, 5, 6):
        assert state.live(*event(seq)) is Verdict.HELD
    assert state.live(b'{"type":"dialog"}', None, None) is Verdict.HELD  # order kept for every event
    frames = state.sync_reply(*synced(3, 4, 5))
    assert seqs_in(frames) == [3, 4, 5, 6]  # 4 and 5 only once: in the reply
    assert frames[-1] == b'{"type":"dialog"}'
    assert not state.syncing
    assert state.live(*event(6)) is Verdict.DUPLICATE


def test_overlapping_syncs_hold_until_the_last_reply() -> None:
    state = DeliveryState(hold_limit=8)
    state.begin_sync()
    state.begin_sync()
    assert state.live(*event(3)) is Verdict.HELD
    assert seqs_in(state.sync_reply(*synced(1, upto=1))) == [1]  # one still in flight: still held
    assert state.live(*event(4)) is Verdict.HELD
    assert seqs_in(state.sync_reply(*synced(2, 3))) == [2, 3, 4]


def test_holding_more_than_the_limit_is_an_overflow() -> None:
    state = DeliveryState(hold_limit=2)
    state.begin_sync()
    assert state.live(*event(1)) is Verdict.HELD
    assert state.live(*event(2)) is Verdict.HELD
    assert state.live(*event(3)) is Verdict.OVERFLOW


def test_a_failed_sync_releases_what_it_held_unfiltered_but_deduplicated() -> None:
    state = DeliveryState(hold_limit=8)
    assert state.live(*event(1)) is Verdict.SEND
    state.begin_sync()
    for seq in (1, 2):
        assert state.live(*event(seq)) is Verdict.HELD
    assert seqs_in(state.sync_failed()) == [2]
    assert not state.syncing
    assert state.live(*event(2)) is Verdict.DUPLICATE


def test_an_error_reply_to_a_sync_goes_out_as_it_is() -> None:
    state = DeliveryState(hold_limit=8)
    state.live(*event(1))
    state.begin_sync()
    assert state.live(*event(2)) is Verdict.HELD
    error = _encode(Error(ref="s", code="invalid", message="bad last_seq"))
    frames = state.sync_reply(error, {})
    assert frames[0] == error and seqs_in(frames) == [2]


def test_live_seqs_remembered_are_bounded() -> None:
    state = DeliveryState(hold_limit=8)
    for seq in range(1, 2 * LIVE_SEQS_KEPT + 1):
        assert state.live(*event(seq)) is Verdict.SEND
    assert state.live(*event(2 * LIVE_SEQS_KEPT)) is Verdict.DUPLICATE  # recent ones still known
    assert state.live(*event(1)) is Verdict.SEND  # the oldest forgotten: the memory is bounded


class Recorder:
    """An ASGI ``send`` that takes everything at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def frames(self) -> list[bytes]:
        return [m["text"].encode() for m in self.sent if m["type"] == "websocket.send"]


async def test_the_relay_writes_a_live_event_to_a_connection_once() -> None:
    out = Recorder()
    conn = Connection("g.1", out.send, 8, lambda: None)
    assert conn.delivery is None  # nothing kept until needed
    for _ in range(2):
        deliver_live(conn, *event(1))
    deliver_live(conn, b'{"type":"dialog"}', None, None)
    assert seqs_in(out.frames()) == [1] and len(out.frames()) == 2


async def test_the_relay_holds_during_a_sync_and_writes_the_reply_then_the_rest() -> None:
    out = Recorder()
    conn = Connection("g.1", out.send, 8, lambda: None)
    sync_started(conn)
    deliver_live(conn, *event(2))
    deliver_live(conn, *event(3))
    assert out.frames() == []
    deliver_sync_reply(conn, *synced(1, 2))
    assert seqs_in(out.frames()) == [1, 2, 3]


async def test_a_connection_holding_too_much_during_a_sync_is_closed_4008() -> None:
    out = Recorder()
    aborted: list[bool] = []
    conn = Connection("g.1", out.send, 2, lambda: aborted.append(True))
    sync_started(conn)
    for seq in (1, 2, 3):
        deliver_live(conn, *event(seq))
    assert conn.closing and conn.closer is not None
    for _ in range(100):
        if out.sent:
            break
        await asyncio.sleep(0.01)
    conn.closer.cancel()  # the grace before the abort is test_gateway_connection's subject
    with contextlib.suppress(asyncio.CancelledError):
        await conn.closer
    assert out.sent == [{"type": "websocket.close", "code": 4008, "reason": "too slow: reconnect and sync"}]
