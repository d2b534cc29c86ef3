"""The broker interface the gateway listens through: connect, subscribe, unsubscribe, and the
next message. One file per backend (broker_redis.py); the relay never sees Redis itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Resubscribed:
    """The subscription connection was lost and is back: anything published meanwhile was
    missed, so every client here should `sync`."""

    reason: str


class Broker(Protocol):
    @property
    def subscribed(self) -> bool:
        """True while the subscription connection is up (readiness)."""
        ...

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def next_message(self) -> Delivery | Resubscribed: ...
