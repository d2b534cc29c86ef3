"""Helpers for the tests of pushed events (presence, typing, read marks, renames): reading a
client's pushes up to one that matches, and polling a condition with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from chat_client import ChatClient
from chat_client.client import Frame
from tests.support.polling import wait_until

DEADLINE_SECONDS = 20.0


async def pushes_until(
    client: ChatClient, match: Callable[[Frame], bool], *, timeout: float = DEADLINE_SECONDS,
) -> list[Frame]:
    """Every push up to and including the first that ``match``es; fails if none comes."""
    seen: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"expected a matching push within {timeout} s, got only {seen}")
        try:
            frame = await client.next_push(timeout=left)
        except TimeoutError:
            raise AssertionError(f"expected a matching push within {timeout} s, got only {seen}") from None
        seen.append(frame)
        if match(frame):
            return seen


def presence_of(user_id: int, online: bool) -> Callable[[Frame], bool]:
    return lambda f: f == {"type": "presence", "user_id": user_id, "online": online}


def of_type(kind: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == kind


async def until(check: Callable[[], Awaitable[bool]], what: str, *, timeout: float = DEADLINE_SECONDS) -> None:
    await wait_until(check, what=f"expected {what}", timeout=timeout)


async def next_non_presence(client: ChatClient, *, timeout: float = DEADLINE_SECONDS) -> Frame:
    """The next push that is not a presence change: those are at-most-once and come whenever a
    dialog peer's first device connects or last one leaves, so a test about other pushes skips them."""
    return (await pushes_until(client, lambda f: f.get("type") != "presence", timeout=timeout))[-1]


async def peer_online(client: ChatClient, peer_id: int) -> bool | None:
    """What the client's `dialogs` says of this peer's presence (None: no dialog with them)."""
    for dialog in await client.dialogs():
        if dialog["peer"]["id"] == peer_id:
            online: bool = dialog["peer"]["online"]
            return online
    return None
