"""The gateway's ASGI app: WebSocket `/ws`, `GET /healthz` (Redis reachable) and
`GET /readyz` (Redis reachable and subscribed: safe to route clients here).

`/ws` is served on the bare ASGI callables, in front of FastAPI: a connection lives for hours
and there are 10,000 of them per gateway, and going through FastAPI would keep, per connection,
Starlette's WebSocket object, its middleware and routing coroutine frames and two exit stacks
(about 10 KB). FastAPI keeps the rest: the health endpoints, lifespan, 404s, and refusing a
WebSocket on any other path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chatkit.settings import Settings
from gateway.node import GatewayNode
from gateway.types import ASGIReceive, ASGISend, Scope

WS_PATH = "/ws"


class GatewayApp:
    """ASGI 3 entry point: `/ws` straight to the node, everything else to FastAPI."""

    def __init__(self, node: GatewayNode, http: FastAPI) -> None:
        self.node = node
        self.http = http

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "websocket" and scope["path"] == WS_PATH:
            await self.node.serve_socket(scope, receive, send)
        else:
            await self.http(scope, receive, send)  # type: ignore[arg-type]


def create_app(settings: Settings) -> GatewayApp:
    node = GatewayNode(settings)
    return GatewayApp(node, http_app(node))


def http_app(node: GatewayNode) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(title="chat gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.node = node

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = await node.redis_ok()
        return JSONResponse({"status": "ok" if ok else "redis unreachable", "gateway": node.id},
                            status_code=200 if ok else 503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = node.broker.subscribed and await node.redis_ok()
        body: dict[str, Any] = {
            "ready": ready, "subscribed": node.broker.subscribed, "connections": len(node.registry.connections),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app
