"""gateway.connections.Connection without a network: frames go out inline while the transport
takes them, wait in order (bounded) while it is paused, and a client that stops reading is
closed with 4008 and then dropped at the TCP level."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import connections
from gateway.connections import CLOSE_SLOW_CONSUMER, Connection


class FakeTransport:
    """An ASGI ``send`` that, like uvicorn's, waits only while writing is paused."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.aborted = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    def abort(self, scope: Any) -> bool:
        self.aborted += 1
        return True


def connection(transport: FakeTransport, limit: int = 3) -> Connection:
    return Connection("g.1", {"client": ("127.0.0.1", 1)}, transport.send, limit, transport.abort)


async def test_frames_go_out_inline_without_a_task() -> None:
    transport = FakeTransport()
    conn = connection(transport)
    tasks = len(asyncio.all_tasks())
    conn.push(b'{"n":1}')
    conn.push(b'{"n":2}')
    assert transport.texts() == ['{"n":1}', '{"n":2}']  # before any await
    assert len(asyncio.all_tasks()) == tasks


async def test_a_paused_transport_queues_in_order_then_drains() -> None:
    transport = FakeTransport()
    conn = connection(transport)
    transport.writable.clear()
    for n in range(4):  # one waits inside send, three in the deque: the limit
        conn.push(b"%d" % n)
    assert transport.texts() == [] and not conn.closing
    transport.writable.set()
    await asyncio.sleep(0.01)
    assert transport.texts() == ["0", "1", "2", "3"]
    conn.push(b"4")  # the writer is gone: inline again
    assert transport.texts()[-1] == "4"
    await conn.finish()


async def test_a_client_that_stops_reading_is_closed_4008_then_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "CLOSE_GRACE_SECONDS", 0.05)
    transport = FakeTransport()
    conn = connection(transport)
    transport.writable.clear()
    for n in range(5):
        conn.push(b"%d" % n)
    assert conn.closing and conn.closer is not None
    conn.push(b"late")  # dropped: the connection is closing
    await conn.closer
    assert transport.aborted == 1  # the close frame never went out: dropped at the TCP level
    transport.writable.set()
    await asyncio.sleep(0.01)
    assert transport.texts() == []
    assert transport.sent == [] or transport.sent[-1] == {
        "type": "websocket.close", "code": CLOSE_SLOW_CONSUMER, "reason": "too slow: reconnect and sync"}


async def test_a_send_that_fails_is_left_to_the_reader() -> None:
    async def gone(message: dict[str, Any]) -> None:
        raise OSError("client disconnected")

    conn = Connection("g.1", {}, gone, 3, lambda scope: False)
    conn.push(b"x")  # no exception escapes into whoever pushed
    assert not conn.closing


async def test_a_slow_client_loses_ephemeral_frames_first() -> None:
    transport = FakeTransport()
    conn = connection(transport)
    conn.push(b"typing-1", ephemeral=True)  # the transport takes it now: sent
    transport.writable.clear()
    conn.push(b"0")
    conn.push(b"typing-2", ephemeral=True)  # a backlog: dropped, not queued
    for n in range(1, 4):
        conn.push(b"%d" % n)
    assert not conn.closing  # the dropped frame took no room in the queue
    transport.writable.set()
    await asyncio.sleep(0.01)
    assert transport.texts() == ["typing-1", "0", "1", "2", "3"]
    await conn.finish()
