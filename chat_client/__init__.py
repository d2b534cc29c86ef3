"""A small asyncio client for the chat wire protocol (docs/PROTOCOL.md), used by the tests,
the load tester and anyone's bot."""

from chat_client.client import ChatClient, ServerError

__all__ = ["ChatClient", "ServerError"]
