"""The small HTTP server of a service process (not the gateway): ``/healthz`` (the process
runs its event loop), ``/readyz`` (chatkit/health.py) and ``/metrics`` (Prometheus text). Plain
asyncio: one GET per connection, answered and closed; nothing here is on a request's path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from chatkit.health import Health

log = logging.getLogger(__name__)

_READ_SECONDS = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


async def respond(health: Health, method: str, path: str) -> tuple[int, str, bytes]:
    """Status, content type and body for one request."""
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"only GET\n"
    path = path.split("?", 1)[0]
    if path == "/healthz":
        return 200, "text/plain", b"ok\n"
    if path == "/readyz":
        problems = await health.problems()
        if problems:
            return 503, "text/plain", ("not ready: " + "; ".join(problems) + "\n").encode()
        return 200, "text/plain", b"ready\n"
    if path == "/metrics":
        await health.problems()
        return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
    return 404, "text/plain", b"not found: try /healthz, /readyz or /metrics\n"


async def _serve_one(health: Health, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_SECONDS)
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            status, kind, body = 400, "text/plain", b"expected an HTTP request line\n"
        else:
            status, kind, body = await respond(health, parts[0], parts[1])
        header = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(header if parts[:1] == ["HEAD"] else header + body)
        await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def ops_server(health: Health, host: str, port: int) -> AsyncIterator[int | None]:
    """Serve while the block runs; yields the port listened on (None when ``port`` is 0: off)."""
    if port == 0:
        yield None
        return
    server = await asyncio.start_server(
        lambda r, w: _serve_one(health, r, w), host, port, reuse_address=True
    )
    bound = int(server.sockets[0].getsockname()[1])
    log.info("%s: /healthz, /readyz and /metrics on http://%s:%d", health.service, host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
