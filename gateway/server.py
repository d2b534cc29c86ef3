"""uvicorn configuration for a gateway, shared by `python -m gateway` and the tests."""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from chatkit.settings import Settings
from gateway.app import GatewayApp, create_app

# Client frames are small; a 64 KiB cap keeps one hostile frame from costing megabytes.
MAX_FRAME_BYTES = 64 * 1024


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, letting go of the handshake once it is answered.

    uvicorn keeps the parsed upgrade request and its 101 response (both with their headers) for
    the connection's life, and reads them only while answering the handshake: at 10,000 idle
    connections that is about 2 KB each of the 20 the gateway may spend (docs/PERFORMANCE.md)."""

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response


def build_server(settings: Settings, **overrides: object) -> uvicorn.Server:
    """A uvicorn server for the gateway, whose app can abort its own connections (see
    GatewayNode.abort_transport)."""
    config = uvicorn_config(settings, **overrides)
    server = uvicorn.Server(config)
    app = config.app
    assert isinstance(app, GatewayApp)
    app.node.server_state = server.server_state
    return server


def uvicorn_config(settings: Settings, **overrides: object) -> uvicorn.Config:
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "ws": WebSocketProtocol,
        "ws_max_size": MAX_FRAME_BYTES,
        # Per-message deflate costs ~40 KB per connection and CPU per frame; chat frames are
        # small JSON, so it is off (docs/PERFORMANCE.md).
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "lifespan": "on",
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 5,
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)  # type: ignore[arg-type]
