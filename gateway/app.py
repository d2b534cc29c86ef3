"""The gateway's ASGI app: WebSocket `/ws`, `GET /healthz` (Redis reachable) and
`GET /readyz` (Redis reachable and subscribed: safe to route clients here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse

from chatkit.settings import Settings
from gateway.node import GatewayNode


def create_app(settings: Settings) -> FastAPI:
    node = GatewayNode(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(title="chat gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.node = node

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await node.serve_socket(websocket)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = await node.redis_ok()
        return JSONResponse({"status": "ok" if ok else "redis unreachable", "gateway": node.id},
                            status_code=200 if ok else 503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = node.broker.subscribed and await node.redis_ok()
        return JSONResponse(
            {"ready": ready, "subscribed": node.broker.subscribed, "connections": len(node.registry.connections)},
            status_code=200 if ready else 503,
        )

    return app
