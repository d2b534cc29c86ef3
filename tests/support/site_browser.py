"""The web chat driven in Debian's chromium through Playwright, as a person would use it: by
its controls' `data-testid`s (docs in issue 13). Playwright cannot download a browser here, so
it launches the system one with flags that keep it off the network."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, ViewportSize, WebSocket, async_playwright, expect

from tests.support import polling
from tests.support.processes import ProcessStack
from tests.support.system_programs import require_program

ROOT = Path(__file__).resolve().parents[2]
# Screenshots of the chat view; git-ignored; the browser test prints where they went.
ARTIFACTS = ROOT / "test-artifacts" / "site"
# Without these chromium keeps trying to reach the internet, which this machine has not.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Generous: the machine is small and shared; every wait is on a condition, never a fixed time.
WAIT_MS = 30_000
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system chromium; `launch` gives it a fresh temporary profile (user-data dir) each time."""
    executable = require_program("chromium", "chromium", "the browser test of the web chat")
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_MS / 1000) -> None:
    """Poll a condition on what the test recorded (not on the page: `expect` does that)."""
    await polling.wait_until(condition, what=f"expected {what}", timeout=timeout)


@contextmanager
def two_gateway_stack(tmp_path: Path) -> Iterator[ProcessStack]:
    """The services and two gateways, alice's and bob's, as real processes (a gateway can be
    killed with kill -9 and started again on its port)."""
    stack = ProcessStack(tmp_path)
    stack.start_servers()
    try:
        stack.start("auth_service", "auth_service")
        stack.start("chat_service", "chat_service")
        stack.start("storage_worker", "storage_worker")
        stack.start_gateway("gateway-alice")
        stack.start_gateway("gateway-bob")
        yield stack
    finally:
        stack.stop()


def origin(stack: ProcessStack, gateway: str) -> str:
    return f"http://127.0.0.1:{stack.gateway_ports[gateway]}"


class ChatPage:
    """One person's page. Records what the page did that a test checks afterwards: scripts'
    errors, alerts (a hostile message must never raise one) and the frames it sent."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.errors: list[str] = []
        self.alerts: list[str] = []
        self.sent_frames: list[dict[str, Any]] = []
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)
        page.on("websocket", self._socket)

    @classmethod
    async def open(cls, browser: Browser, origin: str, *, timezone: str = "UTC", locale: str = "en-US") -> ChatPage:
        context = await browser.new_context(viewport=LAPTOP, timezone_id=timezone, locale=locale)
        chat = cls(await context.new_page(), origin)
        await chat.page.goto(origin + "/")
        return chat

    async def _dialog(self, dialog: Any) -> None:
        self.alerts.append(dialog.message)
        await dialog.dismiss()

    def _socket(self, socket: WebSocket) -> None:
        def sent(payload: str | bytes) -> None:
            self.sent_frames.append(json.loads(payload))

        socket.on("framesent", sent)

    def by(self, test_id: str) -> Any:
        return self.page.get_by_test_id(test_id)

    async def state_is(self, state: str) -> None:
        await expect(self.by("connection-state")).to_have_attribute("data-state", state)

    async def register(self, username: str) -> None:
        """Register (the page logs in right after) and wait until it is connected and caught up."""
        await self.by("username").fill(username)
        await self.by("email").fill(f"{username}@example.org")
        await self.by("password").fill(PASSWORD)
        await self.by("register").click()
        await self.state_is("online")

    async def log_in(self, username: str) -> None:
        await self.by("username").fill(username)
        await self.by("password").fill(PASSWORD)
        await self.by("password").press("Enter")
        await self.state_is("online")

    async def open_dialog(self, peer: str) -> None:
        await self.by("peer-username").fill(peer)
        await self.by("open-dialog").click()
        await expect(self.page.locator("#peer-name")).to_have_text(peer)

    async def send(self, text: str) -> None:
        """Type and press Enter; Shift+Enter for each line break, as a person would."""
        box = self.by("text")
        for number, line in enumerate(text.split("\n")):
            if number:
                await box.press("Shift+Enter")
            await box.press_sequentially(line)
        await box.press("Enter")

    async def seqs(self) -> list[int]:
        found: list[int] = await self.by("message").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
        return found

    async def texts(self) -> list[str]:
        found: list[str] = await self.by("message").locator(".text").all_text_contents()
        return found

    async def wait_for_text(self, text: str) -> None:
        await expect(self.by("message").locator(".text").filter(has_text=text).last).to_be_visible()

    async def times(self) -> list[tuple[str, str]]:
        """Each message's (datetime attribute, time shown)."""
        found: list[tuple[str, str]] = await self.by("message").locator("time").evaluate_all(
            "els => els.map(e => [e.getAttribute('datetime'), e.textContent])"
        )
        return found

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path
