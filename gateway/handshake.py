"""What is checked before a WebSocket is accepted (the headers are gone after it, see
gateway/server.py): room on this gateway (else HTTP 503), the browser's Origin (else HTTP 403),
and whose connection it is (the client's address, for the login limits). Refusals use the ASGI
WebSocket denial response (the ``websocket.http.response`` extension), so the client gets a
plain HTTP status and no socket is opened."""

from __future__ import annotations

import logging

from gateway.limits import Policy
from gateway.types import ASGISend, Scope

log = logging.getLogger(__name__)

DENIAL_EXTENSION = "websocket.http.response"


async def handshake_checks(scope: Scope, send: ASGISend, policy: Policy, open_connections: int) -> str | None:
    """The client's address if the handshake may be accepted; None once it was refused."""
    if open_connections >= policy.connections_per_gateway:
        log.warning("refused a connection: %d open, the most this gateway takes", open_connections)
        await deny(scope, send, 503, b"this gateway is full; try another or retry shortly\n")
        return None
    headers = _headers(scope)
    origin = headers.get("origin")
    if not policy.origin_allowed(origin):
        log.info("refused a connection from origin %r", origin)
        await deny(scope, send, 403, b"origin not allowed\n")
        return None
    client = scope.get("client")
    peer = str(client[0]) if client else None
    return policy.client_address(peer, headers.get("x-forwarded-for"))


async def deny(scope: Scope, send: ASGISend, status: int, body: bytes) -> None:
    """Answer the upgrade with an HTTP status instead of a WebSocket; a server without the
    denial extension can only say 403 (a close before accept)."""
    if DENIAL_EXTENSION not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({
        "type": "websocket.http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
    })
    await send({"type": "websocket.http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    # Only the two this module reads; a repeated X-Forwarded-For is joined as proxies do.
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key in ("origin", "x-forwarded-for"):
            text = value.decode("latin-1")
            found[key] = f"{found[key]}, {text}" if key in found else text
    return found
