"""The client every service and gateway holds: the one door to Redis for commands.

Today there is one server, so every command goes to one pipelined :class:`Link`, and ``call``,
``transaction`` and ``eval_script`` *are* that link's methods (bound once here, so the hot path
pays no extra call). Redis Cluster changes this module only: ``call`` becomes a choice of link
by the slot of the command's key, ``transaction`` and ``eval_script`` check that their keys
share a slot (chatkit/keys.py would then give a dialog's keys one hash tag), and MOVED/ASK
replies (chatkit.redis.errors) refresh the slot map. Callers keep the same three methods."""

from __future__ import annotations

import asyncio

from chatkit.redis.address import RedisAddress, parse_address
from chatkit.redis.link import Link


class RedisClient:
    def __init__(self, address: RedisAddress) -> None:
        self.address = address
        self._link = Link(address)
        self._blocking: list[Link] = []
        # The link's own methods, not wrappers: one call less per command on the hot path.
        self.call = self._link.call
        self.transaction = self._link.transaction
        self.eval_script = self._link.eval_script

    @classmethod
    def from_url(cls, url: str) -> RedisClient:
        """A client of the server ``url`` names (see :func:`~chatkit.redis.address.parse_address`)."""
        return cls(parse_address(url))

    @property
    def backlog(self) -> int:
        """Commands sent whose replies have not come back yet."""
        return self._link.backlog

    def blocking_link(self) -> Link:
        """A link of its own for a blocking command (XREADGROUP ... BLOCK), which would hold up
        every command queued behind it on the shared one. Closed with the client."""
        link = Link(self.address)
        self._blocking.append(link)
        return link

    async def close(self) -> None:
        await asyncio.gather(self._link.close(), *(link.close() for link in self._blocking))

    def __repr__(self) -> str:
        return f"RedisClient({self.address})"

