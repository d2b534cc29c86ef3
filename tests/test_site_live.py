"""The web chat shows what the protocol pushes beyond messages (issue 13, docs/PROTOCOL.md):
a peer's online dot, "… is typing", the peer's read mark under one's own message, unread counts
from `dialogs`, a peer's rename without a refresh, and `logout` sent before the token is dropped.
alice and bob each have their own browser context and their own gateway (real processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.support.processes import ProcessStack
from tests.support.site_browser import ChatPage, chromium, origin, two_gateway_stack, wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProcessStack]:
    with two_gateway_stack(tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running



async def test_presence_typing_read_marks_unread_and_renames_show(stack: ProcessStack, browser: Browser) -> None:
    bob = await ChatPage.open(browser, origin(stack, "gateway-bob"))
    await bob.register("bob")
    alice = await ChatPage.open(browser, origin(stack, "gateway-alice"))
    await alice.register("alice")
    await alice.open_dialog("bob")
    bobs_dot = alice.by("dialog").get_by_test_id("online")
    await expect(bobs_dot).to_have_attribute("data-online", "true")

    # alice writes while bob's page shows no dialog; after a reload his count comes from `dialogs`.
    await alice.send("hello bob")
    await expect(alice.by("message")).to_have_count(1)
    await expect(alice.by("read-mark")).to_have_count(0)
    await bob.page.reload()
    await bob.state_is("online")
    await expect(bob.by("dialog")).to_contain_text("hello bob")
    await expect(bob.by("unread")).to_have_text("1")

    # bob opens the dialog: his page marks it read, and alice sees "read" under her message.
    await bob.by("dialog").click()
    await expect(bob.by("message")).to_have_count(1)
    await expect(bob.by("unread")).to_have_count(0)
    await wait_until(
        lambda: any(frame.get("type") == "read" and frame.get("seq") == 1 for frame in bob.sent_frames),
        "bob's page to send `read` up to seq 1",
    )
    await expect(alice.by("message").get_by_test_id("read-mark")).to_have_text("read")

    # bob types (without sending): alice sees it; the indicator goes once his message comes.
    await expect(alice.by("typing")).to_be_hidden()
    await bob.by("text").press_sequentially("hi ali")
    await expect(alice.by("typing")).to_have_text("bob is typing…")
    print(f"screenshot while bob types: {await alice.screenshot('chat-typing')}")
    await bob.by("text").press_sequentially("ce")
    await bob.by("text").press("Enter")
    await alice.wait_for_text("hi alice")
    await expect(alice.by("typing")).to_be_hidden()
    typing = [frame for frame in bob.sent_frames if frame.get("type") == "typing"]
    assert typing, "expected bob's page to send `typing` while he typed"

    # bob renames himself: alice's list and header follow from the `user` push alone.
    await bob.by("rename-username").fill("robert")
    await bob.by("rename").click()
    await expect(alice.page.locator("#peer-name")).to_have_text("robert")
    await expect(alice.by("dialog").locator(".peer")).to_have_text("robert")

    # bob's page closes: his dot goes off in alice's list; another page of his turns it on.
    await bob.page.context.close()
    await expect(bobs_dot).to_have_attribute("data-online", "false")
    bob = await ChatPage.open(browser, origin(stack, "gateway-bob"))
    await bob.log_in("robert")
    await expect(bobs_dot).to_have_attribute("data-online", "true")
    # The read mark survives a reload of alice's page (from `dialogs` and `sync`).
    await alice.page.reload()
    await alice.state_is("online")
    await expect(alice.by("read-mark")).to_have_count(1)

    # Logging out tells the server first, then shows the login view.
    await bob.by("logout").click()
    await expect(bob.by("login")).to_be_visible()
    assert any(frame.get("type") == "logout" for frame in bob.sent_frames), "expected a `logout` frame"
    await expect(bobs_dot).to_have_attribute("data-online", "false")

    for page in (alice, bob):
        assert page.errors == [] and page.alerts == [], f"{page.origin}: {page.errors} {page.alerts}"


async def test_a_rate_limited_send_goes_again_with_the_same_id(tmp_path: Path, browser: Browser) -> None:
    stack = ProcessStack(tmp_path)
    # One message a second per user: a burst of five is refused (`rate_limited`) past the first.
    stack.start_servers(user_messages_per_second=1)
    try:
        for name in ("auth_service", "chat_service", "storage_worker"):
            stack.start(name, name)
        stack.start_gateway("gateway")
        alice = await ChatPage.open(browser, origin(stack, "gateway"))
        await alice.register("alice")
        bob = await ChatPage.open(browser, origin(stack, "gateway"))
        await bob.register("bob")
        await alice.open_dialog("bob")
        texts = [f"burst {n}" for n in range(5)]
        for text in texts:
            await alice.by("text").fill(text)
            await alice.by("text").press("Enter")
        await expect(alice.by("message")).to_have_count(5)
        await expect(alice.by("pending-message")).to_have_count(0)
        assert await alice.texts() == texts
        sends = [frame["client_msg_id"] for frame in alice.sent_frames if frame.get("type") == "send"]
        assert len(set(sends)) == 5, f"expected five messages, got ids {sends}"
        assert len(sends) > 5, f"expected refused sends to go again with their id, got {sends}"
        await bob.by("dialog").click()
        await expect(bob.by("message")).to_have_count(5)
        assert await bob.texts() == texts
        for page in (alice, bob):
            assert page.errors == [] and page.alerts == [], f"{page.origin}: {page.errors} {page.alerts}"
    finally:
        stack.stop()
