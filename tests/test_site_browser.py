"""Issue 13's scenario in a real browser: alice and bob, each in their own browser context on
their own gateway (real processes), chat through the web page; alice's gateway is killed with
`kill -9` and started again, and her page catches up by itself with nothing lost or doubled;
a send that timed out is sent again with the same client_msg_id and shows once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, expect

from chat_client import ChatClient
from tests.support.processes import ProcessStack
from tests.support.site_browser import (
    ARTIFACTS,
    LAPTOP,
    PASSWORD,
    PHONE,
    ChatPage,
    chromium,
    origin,
    two_gateway_stack,
    wait_until,
)

pytestmark = pytest.mark.timeout(420)

HOSTILE = "<img src=x onerror=alert(1)>"
ALICE_ZONE = "Asia/Kolkata"
LOGGED_OUT = {
    "username": ("textbox", "Username"), "password": ("textbox", "Password (8 characters or more)"),
    "email": ("textbox", "Email (only to register)"), "login": ("button", "Log in"),
    "register": ("button", "Register"),
}
LOGGED_IN = {
    "peer-username": ("textbox", "Chat with"), "open-dialog": ("button", "Open"),
    "rename-username": ("textbox", "Your name"), "rename": ("button", "Rename"),
    "logout": ("button", "Log out"), "dialog-list": ("list", "Dialogs"),
}
IN_A_DIALOG_WITH_BOB = {"text": ("textbox", "Message"), "send": ("button", "Send"), "message-list": ("log", "bob")}
PAGE = 50  # messages per history page (infra/site/chat.js)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProcessStack]:
    with two_gateway_stack(tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running



async def bot(stack: ProcessStack, gateway: str, username: str) -> ChatClient:
    client = await ChatClient.connect(stack.url(gateway))
    reply = await client.request({"type": "login", "username": username, "password": PASSWORD})
    assert reply["type"] == "logged_in", f"expected {username} to log in, got {reply}"
    return client


async def expect_seqs(page: ChatPage, expected: list[int]) -> None:
    """The page shows exactly these messages, in this order (each once)."""
    await expect(page.by("message")).to_have_count(len(expected))
    assert await page.seqs() == expected


async def test_two_people_chat_through_the_site(stack: ProcessStack, browser: Browser) -> None:
    # alice reads times in India (UTC+05:30), on a 24-hour clock.
    alice = await ChatPage.open(browser, origin(stack, "gateway-alice"), timezone=ALICE_ZONE, locale="en-GB")
    bob = await ChatPage.open(browser, origin(stack, "gateway-bob"))
    await controls_have_accessible_names(alice, LOGGED_OUT)

    # Register (which logs in), log out, log in again.
    await alice.register("alice")
    await expect(alice.page.locator("#me-name")).to_have_text("alice")
    await alice.by("logout").click()
    await expect(alice.by("login")).to_be_visible()
    await alice.state_is("connected")
    assert await alice.page.evaluate("localStorage.getItem('chat.token')") is None
    await alice.log_in("alice")
    await bob.register("bob")
    await controls_have_accessible_names(alice, LOGGED_IN)

    # alice opens the dialog and writes; bob's list gets it live, unread until he opens it.
    await alice.open_dialog("bob")
    await controls_have_accessible_names(alice, IN_A_DIALOG_WITH_BOB)
    await alice.send("hello bob")
    await expect(bob.by("dialog")).to_have_count(1)
    await expect(bob.by("dialog")).to_contain_text("alice")
    await expect(bob.by("dialog").locator(".unread")).to_have_text("1")
    await bob.by("dialog").click()
    await expect_seqs(bob, [1])
    await expect(bob.by("dialog").locator(".unread")).to_have_count(0)

    # Replies show live on the other side; own messages on their own side; a line break kept.
    await bob.send("hi alice\nsecond line")
    await alice.wait_for_text("second line")
    assert await alice.texts() == ["hello bob", "hi alice\nsecond line"]
    assert await alice.by("message").evaluate_all("els => els.map(e => e.classList.contains('mine'))") == [True, False]
    assert await bob.by("message").evaluate_all("els => els.map(e => e.classList.contains('mine'))") == [False, True]
    # Times in the reader's own zone: the server's UTC instant, shown as alice's local clock.
    for sent_at, shown in await alice.times():
        local = datetime.fromisoformat(sent_at.replace("Z", "+00:00")).astimezone(ZoneInfo(ALICE_ZONE))
        expected = local.strftime("%H:%M")
        assert shown == expected, f"expected {sent_at} shown as {expected} in {ALICE_ZONE}, got {shown}"

    # Hostile text is shown as text: no element made of it, no script run.
    await alice.send(HOSTILE)
    await bob.wait_for_text("onerror")
    assert (await bob.texts())[-1] == HOSTILE
    assert await bob.by("message-list").locator("img").count() == 0
    await expect_seqs(bob, [1, 2, 3])
    await bob.send("Ha, that arrived as text. Good.")
    await expect_seqs(alice, [1, 2, 3, 4])
    await screenshots(alice, bob)

    # More than a page of history: bob's other device sends 60 more; alice sees them live.
    bobs_bot = await bot(stack, "gateway-bob", "bob")
    try:
        dialog_id = (await bobs_bot.request({"type": "dialogs"}))["dialogs"][0]["id"]
        for n in range(60):
            reply = await bobs_bot.request(
                {"type": "send", "dialog_id": dialog_id, "text": f"bulk {n}", "client_msg_id": f"bulk-{n}"}
            )
            assert reply["type"] == "sent", f"expected sent, got {reply}"
    finally:
        await bobs_bot.close()
    await expect_seqs(alice, list(range(1, 65)))

    # A reload keeps her logged in and shows the newest page, in order; scrolling up loads the rest.
    await alice.page.reload()
    await alice.state_is("online")
    await expect_seqs(alice, list(range(65 - PAGE, 65)))
    await alice.by("message-list").evaluate("list => { list.scrollTop = 0; }")
    await expect_seqs(alice, list(range(1, 65)))

    # bob renames himself; alice sees the new name with his next message.
    await bob.by("rename-username").fill("robert")
    await bob.by("rename").click()
    await expect(bob.page.locator("#me-name")).to_have_text("robert")
    await bob.send("call me robert")
    await alice.wait_for_text("call me robert")
    await expect(alice.page.locator("#peer-name")).to_have_text("robert")
    await expect(alice.by("dialog")).to_contain_text("robert")
    # Without a message, the name comes pushed (`user`); focus asks `dialogs` again, the fallback.
    await bob.by("rename-username").fill("rob")
    await bob.by("rename").click()
    await expect(bob.page.locator("#me-name")).to_have_text("rob")
    await alice.page.evaluate("window.dispatchEvent(new FocusEvent('focus'))")
    await expect(alice.page.locator("#peer-name")).to_have_text("rob")
    await expect(alice.by("dialog").locator(".peer")).to_have_text("rob")

    # alice's gateway dies: her page shows the drop; bob writes meanwhile.
    stack.kill("gateway-alice")
    await alice.state_is("offline")
    await expect(alice.by("connection-state")).to_contain_text("Disconnected")
    await alice.screenshot("chat-offline")
    for n in range(5):
        await bob.send(f"while you were away {n}")
    await expect_seqs(bob, list(range(1, 71)))
    # The gateway is back on the same port: her page reconnects, logs in and catches up alone.
    stack.start_gateway("gateway-alice")
    await alice.state_is("online")
    await expect_seqs(alice, list(range(1, 71)))
    assert (await alice.texts())[-5:] == [f"while you were away {n}" for n in range(5)]

    # And the live path works again after the reconnect.
    await alice.send("back")
    await bob.wait_for_text("back")
    await expect_seqs(bob, list(range(1, 72)))
    await expect_seqs(alice, list(range(1, 72)))

    for page in (alice, bob):
        assert page.errors == [] and page.alerts == [], f"{page.origin}: {page.errors} {page.alerts}"


async def controls_have_accessible_names(page: ChatPage, controls: dict[str, tuple[str, str]]) -> None:
    """Each control is found by its role and name (a label, or a button's text), as assistive
    technology finds it, and is the element with that test id."""
    for test_id, (role, name) in controls.items():
        found = page.page.get_by_role(role, name=name, exact=True)  # type: ignore[arg-type]
        await expect(found).to_have_attribute("data-testid", test_id)


async def screenshots(alice: ChatPage, bob: ChatPage) -> None:
    paths = [await alice.screenshot("chat-laptop")]
    await bob.page.set_viewport_size(PHONE)
    paths.append(await bob.screenshot("chat-phone"))
    await bob.page.set_viewport_size(LAPTOP)
    print(f"screenshots of the chat view (and chat-offline.png) in {ARTIFACTS}: {[path.name for path in paths]}")


async def test_a_send_that_timed_out_is_resent_with_the_same_id(stack: ProcessStack, browser: Browser) -> None:
    alice = await ChatPage.open(browser, origin(stack, "gateway-alice"))
    await alice.register("alice")
    bobs_page = await ChatPage.open(browser, origin(stack, "gateway-bob"))
    await bobs_page.register("bob")
    await alice.open_dialog("bob")
    await alice.send("before")
    await expect_seqs(alice, [1])

    # No chat_service: the send gets no answer, and the page sends it again, same id.
    stack.kill("chat_service")
    await alice.send("are you there")
    await expect(alice.page.get_by_test_id("pending-message")).to_contain_text("are you there")

    def attempts() -> list[str]:
        return [
            frame["client_msg_id"] for frame in alice.sent_frames
            if frame.get("type") == "send" and frame.get("text") == "are you there"
        ]

    await wait_until(lambda: len(attempts()) > 1, "the page to send the timed-out message again", timeout=60)
    assert len(set(attempts())) == 1, f"expected every attempt to carry one client_msg_id, got {attempts()}"

    # chat_service is back: it handles every attempt, and they make one message.
    stack.start("chat_service", "chat_service")
    await expect(alice.page.get_by_test_id("pending-message")).to_have_count(0, timeout=60_000)
    await expect_seqs(alice, [1, 2])
    assert (await alice.texts())[-1] == "are you there"
    await expect(bobs_page.by("dialog")).to_contain_text("are you there")
    await bobs_page.by("dialog").click()
    await expect_seqs(bobs_page, [1, 2])
