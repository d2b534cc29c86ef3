"""What the gateway assumes of uvicorn (the numbered list in gateway/server.py), checked against a
real uvicorn server running gateway.server's configuration and protocol class around a small
ASGI app. Each failure names the assumption an upgrade broke; fix gateway/server.py (and the
pin in pyproject.toml) before anything else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chatkit.settings import Settings
from devstack.embedded import free_port
from gateway.connections import CLOSE_GOING_AWAY
from gateway.inline import first_step, resume
from gateway.server import GOING_AWAY_REASON, WebSocketProtocol, uvicorn_config
from gateway.types import ASGIReceive, ASGISend, Message, Scope, transport_abort

pytestmark = pytest.mark.timeout(60)

FLOOD_FRAME = "x" * 32 * 1024
# More than enough to fill the peer's receive buffer and our send buffer on loopback (a few MB).
FLOOD_MAX_FRAMES = 2000


Check = Callable[[], Coroutine[Any, Any, None]]
OnLoop = Callable[[Check], Awaitable[None]]


@pytest.fixture(params=["uvloop", "asyncio"])
def on_loop(request: pytest.FixtureRequest) -> OnLoop:
    """Runs a check on the loop the gateway runs on (uvloop, in a thread of its own) and on
    asyncio's (the test's own loop, which the in-process test stacks use)."""

    async def run(check: Check) -> None:
        if request.param == "uvloop":
            await asyncio.to_thread(uvloop.run, check())
        else:
            await check()

    return run


def broken(number: int, name: str, what: str) -> str:
    return f"uvicorn assumption {number} ({name}, gateway/server.py) broken: {what}"


Handler = Callable[["App", Scope, ASGIReceive, ASGISend], Awaitable[None]]


@dataclass
class App:
    """Accepts every WebSocket, then runs ``handler``; remembers what the server handed it."""

    handler: Handler
    scopes: list[Scope] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    failures: list[BaseException] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        try:
            await send({"type": "websocket.accept"})
            self.scopes.append(scope)
            await self.handler(self, scope, receive, send)
        except BaseException as exc:
            self.failures.append(exc)
            raise


async def wait_until(condition: Callable[[], object], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {what} within 10 s")


@contextlib.asynccontextmanager
async def serving(app: App, **overrides: object) -> AsyncIterator[tuple[uvicorn.Server, str]]:
    port = free_port()
    settings = Settings(port=port, log_level="warning")
    # The test's own event loop runs the server; no lifespan (the app serves only WebSockets).
    server = uvicorn.Server(uvicorn_config(app, settings, loop="none", lifespan="off", **overrides))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), "the server to start")
        if task.done():
            task.result()
        yield server, f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def the_protocol(server: uvicorn.Server) -> WebSocketProtocol:
    protocols = [p for p in server.server_state.connections if isinstance(p, WebSocketProtocol)]
    assert len(protocols) == 1, broken(1, "protocol class", f"expected one {WebSocketProtocol.__name__}, got "
                                                             f"{server.server_state.connections}")
    return protocols[0]


async def echo(app: App, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    while True:
        message = await receive()
        app.received.append(message)
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


async def roundtrip(ws: ClientConnection, text: str) -> None:
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), 5) == text


async def test_1_the_sans_io_protocol_serves_the_gateways_websockets(on_loop: OnLoop) -> None:
    await on_loop(_1_the_sans_io_protocol_serves_the_gateways_websockets)


async def _1_the_sans_io_protocol_serves_the_gateways_websockets() -> None:
    app = App(echo)
    async with serving(app) as (server, url), websockets.connect(url, compression=None) as ws:
        await roundtrip(ws, "hello")
        assert isinstance(the_protocol(server), WebSocketProtocol)
    assert not app.failures


async def test_2_the_handshake_is_let_go_and_the_connection_still_works(on_loop: OnLoop) -> None:
    await on_loop(_2_the_handshake_is_let_go_and_the_connection_still_works)


async def _2_the_handshake_is_let_go_and_the_connection_still_works() -> None:
    app = App(echo)
    # Pings every 50 ms: the keepalive must keep working without the handshake.
    async with (
        serving(app, ws_ping_interval=0.05, ws_ping_timeout=5.0) as (server, url),
        websockets.connect(url, compression=None, user_agent_header="x" * 2000) as ws,
    ):
        name = "handshake release"
        await wait_until(lambda: app.scopes or app.failures, "the accept")
        assert not app.failures, broken(2, name, f"the accept failed: {app.failures[0]!r}")
        await roundtrip(ws, "one")
        protocol = the_protocol(server)
        assert protocol.handshake_complete, broken(2, name, "the protocol no longer says handshake_complete")
        assert not hasattr(protocol, "request") and not hasattr(protocol, "response"), broken(
            2, name, "the upgrade request or its response is still held after the accept")
        assert app.scopes[0]["headers"] == (), broken(2, name, "the scope still holds the handshake's headers")
        await wait_until(lambda: protocol.last_ping_rtt > 0, "a keepalive ping answered after the handshake")
        await roundtrip(ws, "two")
    assert app.received[-1]["type"] == "websocket.disconnect", broken(2, name, "the close was not passed on")
    assert not app.failures, broken(2, name, f"the app failed: {app.failures}")


async def test_3_the_abort_handle_in_the_scope_drops_the_connection(on_loop: OnLoop) -> None:
    await on_loop(_3_the_abort_handle_in_the_scope_drops_the_connection)


async def _3_the_abort_handle_in_the_scope_drops_the_connection() -> None:
    async def abort_on_request(app: App, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        abort = app.notes["abort"] = transport_abort(scope)
        message = await receive()
        assert message.get("text") == "abort"
        abort()
        app.received.append(await receive())

    app = App(abort_on_request)
    name = "abort handle"
    async with serving(app) as (_, url), websockets.connect(url, compression=None) as ws:
        await wait_until(lambda: "abort" in app.notes or app.failures, "the app to take its abort handle")
        assert not app.failures, broken(3, name, f"no abort handle in the scope at accept: {app.failures[0]}")
        await ws.send("abort")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is None, broken(3, name, f"expected no close frame, got {closed.value.rcvd}")
        await wait_until(lambda: app.received, "the app told of the disconnect")
    assert app.received[0]["type"] == "websocket.disconnect", broken(3, name, f"got {app.received}")


async def test_4_send_finishes_in_its_first_step_unless_the_transport_is_paused(on_loop: OnLoop) -> None:
    await on_loop(_4_send_finishes_in_its_first_step_unless_the_transport_is_paused)


async def _4_send_finishes_in_its_first_step_unless_the_transport_is_paused() -> None:
    name = "send inline"

    async def flood(app: App, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await receive()  # the client asks for the flood
        for inline in range(FLOOD_MAX_FRAMES):
            started = first_step(send({"type": "websocket.send", "text": FLOOD_FRAME}))
            if started is not None:
                app.notes["paused"] = not app.notes["protocol"].writable.is_set()
                app.notes["inline"] = inline  # sends that finished in their first step before this one
                await resume(*started)  # finishes once the client reads again
                app.notes["resumed"] = True
                break
        else:
            app.failures.append(AssertionError(broken(4, name, f"{FLOOD_MAX_FRAMES} frames to a client that "
                                                               "reads nothing, and no send waited")))
        await send({"type": "websocket.send", "text": "done"})
        await receive()

    app = App(flood)
    # max_queue=1: the client stops reading from its socket after a frame until recv is called.
    async with serving(app) as (server, url), websockets.connect(url, compression=None, max_queue=1) as ws:
        await roundtrip_ready(app, server)
        await ws.send("go")
        await wait_until(lambda: "inline" in app.notes or app.failures, "a send that has to wait")
        assert not app.failures, app.failures
        assert app.notes["inline"] > 0, broken(4, name, "a send to a writable transport did not finish inline")
        assert app.notes["paused"], broken(4, name, "a send suspended while the transport was not paused")
        frames = 0
        while await asyncio.wait_for(ws.recv(), 10) != "done":
            frames += 1
        assert app.notes.get("resumed"), broken(4, name, "the suspended send did not finish once writable")
        assert frames == app.notes["inline"] + 1  # every frame, the one that waited included


async def roundtrip_ready(app: App, server: uvicorn.Server) -> None:
    await wait_until(lambda: app.scopes, "the app to accept")
    app.notes["protocol"] = the_protocol(server)


async def test_5_shutdown_closes_every_websocket_with_1001(on_loop: OnLoop) -> None:
    await on_loop(_5_shutdown_closes_every_websocket_with_1001)


async def _5_shutdown_closes_every_websocket_with_1001() -> None:
    app = App(echo)
    name = "going away"
    async with serving(app) as (server, url), websockets.connect(url, compression=None) as ws:
        await roundtrip(ws, "hello")
        server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    received = closed.value.rcvd
    assert received is not None and received.code == CLOSE_GOING_AWAY == 1001, broken(
        5, name, f"expected the client closed with 1001, got {received}")
    assert received.reason == GOING_AWAY_REASON
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 1001}, broken(
        5, name, f"the app was told {app.received[-1]}")
