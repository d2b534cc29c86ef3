"""The ASGI callables' types, said once for the gateway (ASGI 3: a scope, ``receive`` and
``send``). ``ASGISend`` is not the wire protocol's `send` frame (chatkit.wire.Send)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
ASGIReceive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]

# What the gateway needs of its ASGI server beyond ASGI: a way to drop a connection at the TCP
# level (ASGI has none, and a close frame to a peer that stopped reading never leaves the send
# buffer). The server puts a callable doing that in the scope under this key at accept
# (gateway/server.py's WebSocketProtocol).
ABORT_KEY = "gateway.abort"


def transport_abort(scope: Scope) -> Callable[[], None]:
    """The connection's abort handle, which the server put in its scope at accept."""
    abort = scope.get(ABORT_KEY)
    if not callable(abort):
        raise RuntimeError(
            f"expected the ASGI server to put a transport abort in scope[{ABORT_KEY!r}] at accept "
            f"(gateway.server.WebSocketProtocol does), found {abort!r}"
        )
    return abort  # type: ignore[no-any-return]
