"""Everything the gateway knows about uvicorn, in this one module.

Tested against the uvicorn range pinned in pyproject.toml; tests/test_uvicorn_contract.py runs
a real uvicorn server and fails, naming the assumption, when an upgrade breaks one of these:

1. PROTOCOL CLASS: WebSockets are served by uvicorn's sans-I/O implementation (new in uvicorn
   0.35), subclassed below as WebSocketProtocol. Its module is private (no public name for the
   class exists); this is the only module importing it.
2. HANDSHAKE RELEASE: the protocol keeps the parsed upgrade request and its 101 response
   (``request``, ``response``, headers and all) and the scope (with its headers) for the
   connection's life, but reads the first two only while answering the handshake and the
   gateway reads no header after it: once the accept is sent all three are let go (about 2 KB
   per idle connection, docs/PERFORMANCE.md).
3. ABORT HANDLE: the protocol's ``transport.abort`` drops the TCP connection at once; at accept
   it is put in the scope (gateway.types.ABORT_KEY), where the connection takes it from.
4. SEND INLINE: ``send`` of a ``websocket.send`` writes and returns in its first step unless the
   transport is paused (its write buffer over the high-water mark); gateway/inline.py runs that
   first step from whoever pushed a frame, and gives a task only to a send that has to wait.
5. GOING AWAY: on shutdown uvicorn closes each open WebSocket with 1012 (service restart); the
   gateway promises 1001 (docs/PROTOCOL.md), so the protocol's shutdown says 1001. A client that
   stopped reading never lets that close leave the send buffer: it is dropped after a grace
   (DRAIN_GRACE_SECONDS), so a drain ends in bounded time (SIGTERM: stop accepting, close every
   client, exit; uvicorn's own ``timeout_graceful_shutdown`` is the backstop).
6. QUIET PER CONNECTION: uvicorn and websockets log two INFO lines per accepted WebSocket
   ('"WebSocket /ws" [accepted]', 'connection open'); at 10,000 connections that is noise, so
   the protocol logs through a logger that makes them DEBUG, and uvicorn's own logger is kept
   at WARNING unless the gateway logs at DEBUG (the node logs one line when it is ready and one
   when it stops).
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

# (1) A private module: see above.
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from chatkit.settings import Settings
from gateway.app import create_app
from gateway.connections import CLOSE_GOING_AWAY
from gateway.types import ABORT_KEY

# Client frames are small; a 64 KiB cap keeps one hostile frame from costing megabytes.
MAX_FRAME_BYTES = 64 * 1024
GOING_AWAY_REASON = "gateway shutting down"
# How long a client has to take the 1001 close on shutdown before its connection is dropped.
DRAIN_GRACE_SECONDS = 2.0
# uvicorn's wait for connections and tasks on shutdown, past which it cancels them.
GRACEFUL_SHUTDOWN_SECONDS = 5

log = logging.getLogger(__name__)


class _DebugOnly(logging.Filter):
    """Makes every record DEBUG (and drops it unless DEBUG is on): see point 6 above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _PER_CONNECTION_LOG.isEnabledFor(logging.DEBUG)


_PER_CONNECTION_LOG = logging.getLogger("gateway.websocket")
_PER_CONNECTION_LOG.addFilter(_DebugOnly())


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, letting go of the handshake once it is answered,
    handing the app an abort, saying 1001 on shutdown, and logging per connection at DEBUG
    (points 2, 3, 5 and 6 above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _PER_CONNECTION_LOG
        self.conn.logger = _PER_CONNECTION_LOG

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope["headers"] = ()
            scope[ABORT_KEY] = self.transport.abort

    def shutdown(self) -> None:
        # uvicorn's own shutdown, but for the close code and its reason, and the grace.
        if self.close_sent or not self.handshake_complete or self.initial_response is not None:
            super().shutdown()
        else:
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_GOING_AWAY})
            self.conn.send_close(CLOSE_GOING_AWAY, GOING_AWAY_REASON)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
        # A closed transport still waits for its buffer to drain; one that never drains is
        # dropped (aborting a transport that is gone by then does nothing).
        self.loop.call_later(DRAIN_GRACE_SECONDS, self.transport.abort)


class GatewayServer(uvicorn.Server):
    """uvicorn's server, saying once that it is stopping, and how many clients it closes."""

    async def shutdown(self, sockets: Any = None) -> None:
        log.info("gateway stopping: no new connections; closing %d with %d, exiting within %g s",
                 len(self.server_state.connections), CLOSE_GOING_AWAY,
                 DRAIN_GRACE_SECONDS + GRACEFUL_SHUTDOWN_SECONDS)
        await super().shutdown(sockets)


def build_server(settings: Settings, **overrides: object) -> uvicorn.Server:
    """A uvicorn server for the gateway."""
    return GatewayServer(uvicorn_config(create_app(settings), settings, **overrides))


def uvicorn_config(app: Any, settings: Settings, **overrides: object) -> uvicorn.Config:
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
        # uvicorn's own lines (startup banner, per-connection) only when debugging (point 6).
        "log_level": "debug" if settings.log_level.upper() == "DEBUG" else "warning",
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]
