"""From a client frame to the handler method for its type: one table per service, built from
the union of frames the service handles (chatkit.wire.AuthFrame, ChatFrame) and checked
against it when the service starts, so a frame added to a union without a handler, or a
handler for a frame outside it, fails at once instead of at the first such request.

Each handler takes the frame first, then whatever the service passes along (the same for all
of a service's handlers)::

    table = FrameTable("chat_service", ChatFrame, Route(Send, self.send), ...)
    await table.handler(request.frame)(request.frame, user, request, outbox)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from chatkit.errors import RequestError
from chatkit.wire import Frame, frame_classes, frame_tag, frame_tags

F = TypeVar("F", bound=Frame)
P = ParamSpec("P")


class Route(Generic[P]):
    """One row of a table: frames of type ``frame`` go to ``handler``. The frame type is a type
    parameter of the constructor alone, so the type checker holds the handler to taking that
    frame type (as a class parameter, the table's context would let it be inferred as Any)."""

    __slots__ = ("frame", "handler")

    def __init__(self, frame: type[F], handler: Callable[Concatenate[F, P], Awaitable[None]]) -> None:
        self.frame: type[Frame] = frame
        self.handler: Callable[..., Awaitable[None]] = handler


class FrameTable(Generic[P]):
    def __init__(self, service: str, frames: Any, *routes: Route[P]) -> None:
        """``frames``: the union of frame structs this service handles; one route for each."""
        self.service = service
        self.handles = frame_tags(frames)
        self._table: dict[type[Frame], Callable[..., Awaitable[None]]] = {}
        for route in routes:
            if route.frame in self._table:
                raise TypeError(f"{service}: expected one route per frame type, got two for {frame_tag(route.frame)!r}")
            self._table[route.frame] = route.handler
        expected = set(frame_classes(frames))
        missing = sorted(frame_tag(f) for f in expected - self._table.keys())
        extra = sorted(frame_tag(f) for f in self._table.keys() - expected)
        if missing or extra:
            raise TypeError(
                f"{service}: expected a route for each of {', '.join(self.handles)}; "
                f"missing {missing or 'none'}, not handled here {extra or 'none'}"
            )

    def handler(self, frame: Frame) -> Callable[Concatenate[Frame, P], Awaitable[None]]:
        """The handler for this frame's type, to call with the frame and the service's
        arguments; raises RequestError for a frame this service does not handle."""
        handler = self._table.get(type(frame))
        if handler is None:
            raise RequestError(
                "unknown_type",
                f"{self.service} handles {', '.join(repr(t) for t in self.handles)}; got {frame_tag(frame)!r}",
            )
        return handler
