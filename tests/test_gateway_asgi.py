"""The gateway's own ASGI front (gateway/app.py): `/ws` on the bare ASGI callables still keeps
the protocol's frame rules, FastAPI still serves health and readiness, and other paths are
refused; a gateway shutting down says so with 1001. (What it assumes of uvicorn:
tests/test_uvicorn_contract.py.)"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.stack import Stack


def _http_base(stack: Stack) -> str:
    return stack.gateway_urls[0].replace("ws://", "http://").removesuffix("/ws")


async def _get(url: str) -> tuple[int, dict[str, object]]:
    def fetch() -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    return await asyncio.to_thread(fetch)


async def test_a_binary_frame_gets_bad_frame_and_the_connection_stays_open(stack: Stack) -> None:
    async with websockets.connect(stack.gateway_urls[0], compression=None) as ws:
        await ws.send(b'{"type": "dialogs"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["type"] == "error" and reply["code"] == "bad_frame" and "binary" in reply["message"]
        await ws.send('{"type": "dialogs"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["code"] == "unauthenticated"


async def test_a_frame_over_64_kib_closes_with_1009(stack: Stack) -> None:
    async with websockets.connect(stack.gateway_urls[0], compression=None, max_size=None) as ws:
        await ws.send('{"type": "login", "username": "' + "x" * (64 * 1024) + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_healthz_and_readyz(stack: Stack) -> None:
    status, body = await _get(_http_base(stack) + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["gateway"]
    async with websockets.connect(stack.gateway_urls[0], compression=None):
        status, body = await _get(_http_base(stack) + "/readyz")
    assert status == 200 and body == {"ready": True, "subscribed": True, "connections": 1}


async def test_other_paths_are_not_the_websocket(stack: Stack) -> None:
    status, _ = await _get(_http_base(stack) + "/nowhere")
    assert status == 404
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(stack.gateway_urls[0] + "x", compression=None)
    assert refused.value.response.status_code == 403


async def test_a_gateway_shutting_down_closes_its_clients_with_1001(stack: Stack) -> None:
    # docs/PROTOCOL.md: 1001, "the gateway is shutting down" (uvicorn alone would say 1012).
    url = await stack.start_gateway("gateway-leaving")
    async with websockets.connect(url, compression=None) as ws:
        await ws.send('{"type": "dialogs"}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["code"] == "unauthenticated"
        stopping = asyncio.create_task(stack.stop_gateway("gateway-leaving"))
        try:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        finally:
            await stopping
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
