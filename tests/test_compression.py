"""Compression is not negotiated (docs/PROTOCOL.md, "Frames"): a client that offers
permessage-deflate gets a handshake answer without the extension, and chats uncompressed."""

from __future__ import annotations

from chat_client import ChatClient
from tests.support.stack import Stack
from tests.support.users import PASSWORD

EXTENSIONS = "Sec-WebSocket-Extensions"


async def deflating_client(stack: Stack, gateway: int) -> ChatClient:
    client = await ChatClient.connect(stack.gateway_urls[gateway], compression="deflate")
    stack.clients.append(client)  # closed with the stack, even when the test fails
    return client


async def test_a_deflate_offer_is_declined_and_the_client_still_chats(stack: Stack) -> None:
    alice = await deflating_client(stack, 0)
    bob = await deflating_client(stack, 1)
    for client in (alice, bob):
        request, response = client.ws.request, client.ws.response
        assert request is not None and response is not None
        # The offer was made, so the answer below is a refusal and not a question never asked.
        assert "permessage-deflate" in request.headers.get(EXTENSIONS, ""), request.headers
        assert response.status_code == 101
        assert EXTENSIONS not in response.headers, response.headers
        assert client.ws.protocol.extensions == []

    for name, client in (("alice", alice), ("bob", bob)):
        await client.register(name, f"{name}@example.org", PASSWORD)
        await client.login(name, PASSWORD)
    dialog_id = (await alice.open_dialog("bob"))["id"]
    # Very compressible, and it still arrives as it was sent.
    text = "la " * 1000
    sent = await alice.send(dialog_id, text)
    assert sent["text"] == text.strip()
    assert await bob.next_push() == {"type": "message", "message": sent}
    synced = await bob.call({"type": "sync", "dialogs": {dialog_id: 0}})
    assert synced["dialogs"] == {dialog_id: 1}
