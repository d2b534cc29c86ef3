"""The client frame types are said once, by the unions in chatkit.wire: the gateway's routing
sets derive from them, and each service dispatches through one table checked against its
union (chatkit.dispatch); a frame a service does not handle gets `unknown_type`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio
from redis.asyncio.client import PubSub

from chatkit import keys, wire
from chatkit.dispatch import FrameTable, Route
from chatkit.envelopes import ENTRY_FIELD, ConnReply, Request
from chatkit.errors import RequestError
from tests.support import layout
from tests.support.stack import Stack

_encode = msgspec.json.Encoder().encode


def test_sets_derive_from_the_unions() -> None:
    assert wire.CLIENT_FRAME_TYPES == (
        "register", "login", "auth", "rename", "logout", "open_dialog", "dialogs", "send", "history", "sync",
        "typing", "read",
    )
    assert {"register", "login", "auth"} == wire.ANONYMOUS_FRAME_TYPES
    assert {"register", "login", "auth", "rename", "logout"} == wire.AUTH_FRAME_TYPES
    # Every client frame goes to exactly one service.
    chat = set(wire.frame_tags(wire.ChatFrame))
    assert chat == set(wire.CLIENT_FRAME_TYPES) - wire.AUTH_FRAME_TYPES
    assert not chat & wire.AUTH_FRAME_TYPES


def test_frame_helpers_refuse_what_is_not_a_client_frame() -> None:
    with pytest.raises(TypeError, match="expected a union of client frame structs"):
        wire.frame_classes(wire.Send | wire.Message)
    assert wire.frame_classes(wire.Send) == (wire.Send,)
    with pytest.raises(TypeError, match="string tag"):
        wire.frame_tag(wire.Message)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, wire.Frame, int]] = []

    async def send(self, frame: wire.Send, n: int) -> None:
        self.seen.append(("send", frame, n))

    async def sync(self, frame: wire.Sync, n: int) -> None:
        self.seen.append(("sync", frame, n))


async def test_table_dispatches_by_frame_type() -> None:
    recorder = Recorder()
    table = FrameTable("test", wire.Send | wire.Sync, Route(wire.Send, recorder.send), Route(wire.Sync, recorder.sync))
    send = wire.Send(dialog_id="1_2", text="hi", client_msg_id="c")
    sync = wire.Sync()
    await table.handler(sync)(sync, 1)
    await table.handler(send)(send, 2)
    assert recorder.seen == [("sync", sync, 1), ("send", send, 2)]


def test_table_answers_unknown_type_naming_what_it_handles() -> None:
    recorder = Recorder()
    table = FrameTable("test", wire.Send | wire.Sync, Route(wire.Send, recorder.send), Route(wire.Sync, recorder.sync))
    with pytest.raises(RequestError) as caught:
        table.handler(wire.Auth(token="t"))
    assert caught.value.code == "unknown_type"
    assert caught.value.message == "test handles 'send', 'sync'; got 'auth'"
    assert recorder.seen == []


def test_table_must_cover_its_union_exactly() -> None:
    recorder = Recorder()
    with pytest.raises(TypeError, match=r"missing \['sync'\], not handled here none"):
        FrameTable("test", wire.Send | wire.Sync, Route(wire.Send, recorder.send))
    with pytest.raises(TypeError, match=r"missing none, not handled here \['sync'\]"):
        FrameTable("test", wire.Send, Route(wire.Send, recorder.send), Route(wire.Sync, recorder.sync))
    with pytest.raises(TypeError, match="two for 'send'"):
        FrameTable("test", wire.Send, Route(wire.Send, recorder.send), Route(wire.Send, recorder.send))


@contextlib.asynccontextmanager
async def listening(rds: redis.asyncio.Redis, channel: str) -> AsyncIterator[PubSub]:
    """A subscription the server has confirmed, closed on the way out."""
    pubsub = rds.pubsub()
    try:
        await pubsub.subscribe(channel)
        await next_message(pubsub, "subscribe")
        yield pubsub
    finally:
        await pubsub.aclose()


async def next_message(pubsub: PubSub, kind: str = "message") -> bytes:
    async with asyncio.timeout(10):
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == kind:
                data = message["data"]
                return data if isinstance(data, bytes) else str(data).encode()


@pytest.mark.parametrize(
    ("stream", "frame", "service"),
    [
        (
            layout.CHAT_REQUESTS[0], wire.Register(username="alice", email="a@example.org", password="x" * 8),
            "chat_service",
        ),
        (layout.AUTH_REQUESTS[0], wire.ListDialogs(ref="r1"), "auth_service"),
    ],
)
async def test_service_answers_unknown_type_for_a_frame_it_does_not_handle(
    stack: Stack, rds: redis.asyncio.Redis, stream: str, frame: wire.ClientFrame, service: str,
) -> None:
    # The gateway never routes these here; a request put on the stream by hand shows what the
    # service's own table says.
    gateway = "test-gateway"
    request = Request(gateway=gateway, conn="test-gateway.1", user=wire.UserRef(id=1, username="alice"), frame=frame)
    async with listening(rds, keys.gateway_channel(gateway)) as pubsub:
        await rds.xadd(stream, {ENTRY_FIELD: _encode(request)})
        reply = msgspec.json.decode(await next_message(pubsub), type=ConnReply, strict=True)
    error = msgspec.json.decode(reply.frame, type=wire.Error, strict=True)
    assert reply.conn == "test-gateway.1" and reply.answers == wire.frame_tag(frame)
    assert error.code == "unknown_type"
    assert error.ref == frame.ref
    handled = wire.frame_tags(wire.ChatFrame if service == "chat_service" else wire.AuthFrame)
    expected = ", ".join(repr(t) for t in handled)
    assert error.message == f"{service} handles {expected}; got {wire.frame_tag(frame)!r}"

