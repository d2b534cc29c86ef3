"""The gateway's ASGI app: WebSocket `/ws`, `GET /healthz` (Redis reachable) and
`GET /readyz` (Redis reachable and subscribed: safe to route clients here), `GET /metrics`
(Prometheus text, gateway/metrics.py), and the web chat's
static files at `/` (CHAT_SITE_DIR).

`/ws` is served on the bare ASGI callables, in front of FastAPI: a connection lives for hours
and there are 10,000 of them per gateway, and going through FastAPI would keep, per connection,
Starlette's WebSocket object, its middleware and routing coroutine frames and two exit stacks
(about 10 KB). FastAPI keeps the rest: the health endpoints, lifespan, 404s, and refusing a
WebSocket on any other path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive as HttpReceive
from starlette.types import Scope as HttpScope
from starlette.types import Send as HttpSend
from starlette.websockets import WebSocketClose

from chatkit.settings import Settings
from gateway.node import GatewayNode
from gateway.types import ASGIReceive, ASGISend, Scope

WS_PATH = "/ws"
log = logging.getLogger(__name__)


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

    @app.get("/metrics")
    async def metrics() -> Response:
        node.metrics.ready.set(1 if node.broker.subscribed and await node.redis_ok() else 0)
        return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    site = node.settings.site_dir
    if site.is_dir():
        # Mounted last: the routes above win; any other GET looks for a file, else 404.
        app.mount("/", _Site(directory=site, html=True), name="site")
    else:
        log.info("no site served at /: %s is not a directory (CHAT_SITE_DIR)", site)
    return app


class _Site(StaticFiles):
    """The site's files over HTTP only: a WebSocket on any path but /ws is still refused (403)."""

    async def __call__(self, scope: HttpScope, receive: HttpReceive, send: HttpSend) -> None:
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
