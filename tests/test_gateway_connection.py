"""gateway.connections.Connection without a network: frames go out inline while the transport
takes them, wait in order (bounded) while it is paused, and a client that stops reading is
closed with 4008 and then dropped at the TCP level."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import connections
from gateway.connections import Connection

SLOW_CLOSE = {"type": "websocket.close", "code": 4008, "reason": "too slow: reconnect and sync"}


class FakeTransport:
    """An ASGI ``send`` that, like uvicorn's, waits only while writing is paused, and a
    transport abort. ``log`` is what reached the peer, in order, with ("abort",) where the
    connection was dropped; ``attempted`` every message handed to ``send``, sent or not."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.attempted: list[dict[str, Any]] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.aborted = False

    async def send(self, message: dict[str, Any]) -> None:
        self.attempted.append(message)
        await self.writable.wait()
        if self.aborted:
            raise OSError("the connection was aborted")
        self.log.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.log if isinstance(m, dict) and m["type"] == "websocket.send"]

    def abort(self) -> None:
        self.aborted = True
        self.log.append(("abort",))


def connection(transport: FakeTransport, limit: int = 3) -> Connection:
    return Connection("g.1", transport.send, limit, transport.abort)


async def wait_for(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {what} within 5 s")


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
    await wait_for(lambda: len(transport.texts()) == 4, "the four queued frames written")
    assert transport.texts() == ["0", "1", "2", "3"]
    conn.push(b"4")  # the writer is gone: inline again
    assert transport.texts() == ["0", "1", "2", "3", "4"]
    await conn.finish()


async def fill_until_closed(conn: Connection, transport: FakeTransport) -> None:
    transport.writable.clear()
    for n in range(5):  # one in send, three queued: the fifth is one too many
        conn.push(b"%d" % n)
    assert conn.closing and conn.closer is not None
    conn.push(b"late")  # dropped: the connection is closing
    await wait_for(lambda: transport.attempted[-1]["type"] == "websocket.close", "a close attempted")
    assert transport.attempted[-1] == SLOW_CLOSE, f"expected the close with 4008, got {transport.attempted[-1]}"
    assert not transport.aborted  # not before the peer has had the grace to take the close


async def test_a_client_that_stops_reading_is_closed_4008_then_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client reads again once the close is decided: it is told 4008, and dropped after the grace.
    monkeypatch.setattr(connections, "CLOSE_GRACE_SECONDS", 0.05)
    transport = FakeTransport()
    conn = connection(transport)
    await fill_until_closed(conn, transport)
    transport.writable.set()
    await wait_for(lambda: transport.log, "the close frame written")
    assert transport.log == [SLOW_CLOSE]  # nothing queued went out ahead of it, nothing after it
    assert conn.closer is not None
    await conn.closer
    assert transport.log == [SLOW_CLOSE, ("abort",)]


async def test_a_client_that_never_reads_again_is_aborted_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # The close cannot be told to a peer that takes nothing: it is dropped at the TCP level.
    monkeypatch.setattr(connections, "CLOSE_GRACE_SECONDS", 0.05)
    transport = FakeTransport()
    conn = connection(transport)
    await fill_until_closed(conn, transport)
    assert conn.closer is not None
    await conn.closer
    assert transport.log == [("abort",)]
    transport.writable.set()
    await asyncio.sleep(0)
    assert transport.texts() == []


async def test_a_send_that_fails_is_left_to_the_reader() -> None:
    async def gone(message: dict[str, Any]) -> None:
        raise OSError("client disconnected")

    conn = Connection("g.1", gone, 3, lambda: None)
    conn.push(b"x")  # no exception escapes into whoever pushed
    assert not conn.closing


async def test_ephemeral_frames_go_when_writable_are_dropped_behind_a_backlog_and_never_close() -> None:
    # The `ephemeral` hook (typing, presence: no producer yet, see UserEvent.ephemeral).
    transport = FakeTransport()
    conn = connection(transport, limit=3)
    conn.push(b"typing-1", ephemeral=True)  # the transport takes it now: sent
    assert transport.texts() == ["typing-1"]
    transport.writable.clear()
    conn.push(b"0")  # waits inside send: a backlog from here on
    for n in range(10):  # far more than the queue holds: none queued, none closes
        conn.push(b"typing-%d" % (n + 2), ephemeral=True)
    for n in range(1, 4):
        conn.push(b"%d" % n)
    assert not conn.closing  # the dropped frames took no room in the queue
    transport.writable.set()
    await wait_for(lambda: len(transport.texts()) == 5, "the queued frames written")
    assert transport.texts() == ["typing-1", "0", "1", "2", "3"]
    await conn.finish()
