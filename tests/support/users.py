"""Users on real gateways: registered and logged in, or another device of one."""

from __future__ import annotations

from chat_client import ChatClient
from tests.support.stack import Stack

PASSWORD = "correct horse battery"


async def new_user(stack: Stack, name: str, gateway: int = 0) -> ChatClient:
    """Register ``name`` and log in on a fresh connection to gateway number ``gateway``."""
    client = await stack.client(gateway)
    await client.register(name, f"{name}@example.org", PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def device(stack: Stack, name: str, gateway: int = 0) -> ChatClient:
    """Another connection of an already registered user."""
    client = await stack.client(gateway)
    await client.login(name, PASSWORD)
    return client


def uid(client: ChatClient) -> int:
    assert client.user is not None, "expected a logged-in client"
    user_id: int = client.user["id"]
    return user_id
