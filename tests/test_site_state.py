"""infra/site/state.js, the page's bookkeeping without I/O, run in chromium against a plain file
server: messages held once each and in seq order, the sync position, gaps, and which messages
may change a peer's name."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page

from tests.support.site_browser import chromium
from tests.test_site_serving import SITE

# One browser for the module: starting chromium is most of what these tests cost.
pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(files: str) -> AsyncIterator[Page]:
    async with chromium() as browser:
        opened = await browser.new_page()
        await opened.goto(files + "/style.css")  # any page of that origin, so modules load from it
        yield opened


async def run(page: Page, body: str) -> Any:
    """Evaluate `body` (statements ending in `return`) with state.js's exports in scope."""
    return await page.evaluate(
        f"async () => {{ const {{ DialogMessages, ChatState }} = await import('/state.js'); {body} }}"
    )


def msg(seq: int, sender: int = 2, name: str = "bob", at: str = "2026-12-01T10:00:00.000Z") -> str:
    return (
        f'{{id: "m{seq}", dialog_id: "1_2", seq: {seq}, sender: {{id: {sender}, username: "{name}"}},'
        f' text: "t{seq}", sent_at: "{at}"}}'
    )


async def test_messages_are_held_once_in_order_with_their_sync_position(page: Page) -> None:
    result = await run(page, f"""
        const held = new DialogMessages();
        held.loaded = true;
        const first = held.add([{msg(52)}, {msg(51)}, {msg(53)}]).map(m => m.seq);
        const again = held.add([{msg(52)}, {msg(53)}, {msg(54)}]).map(m => m.seq);
        const before = [held.lo, held.position, held.hasGap()];
        held.add([{msg(56)}]);
        const gap = [held.position, held.hasGap()];
        held.add([{msg(55)}]);
        const filled = [held.position, held.hasGap(), held.atStart];
        held.add([{msg(1)}]);
        return {{first, again, before, gap, filled, start: held.atStart, order: held.sorted().map(m => m.seq)}};
    """)
    assert result["first"] == [51, 52, 53]
    assert result["again"] == [54], "a message held already must not be added twice"
    assert result["before"] == [51, 54, False]
    assert result["gap"] == [54, True], "a hole after 54 keeps the position at 54 and asks for a sync"
    assert result["filled"] == [56, False, False]
    assert result["start"] is True
    assert result["order"] == [1, 51, 52, 53, 54, 55, 56]


async def test_only_dialogs_whose_newest_page_came_are_synced(page: Page) -> None:
    result = await run(page, f"""
        const state = new ChatState();
        state.me = {{id: 1, username: "alice"}};
        state.mergeDialogs([
            {{id: "1_2", peer: {{id: 2, username: "bob"}}}}, {{id: "1_3", peer: {{id: 3, username: "eve"}}}},
        ]);
        state.messagesOf("1_3").fetching = true;
        const loaded = state.messagesOf("1_2");
        loaded.loaded = true;
        loaded.add([{msg(1)}, {msg(2)}]);
        const empty = new ChatState();
        empty.messagesOf("9_9").loaded = true;
        return [state.positions(), empty.positions()];
    """)
    assert result == [{"1_2": 2}, {"9_9": 0}]


async def test_a_peers_name_changes_only_with_a_live_message(page: Page) -> None:
    result = await run(page, f"""
        const state = new ChatState();
        state.me = {{id: 1, username: "alice"}};
        state.mergeDialogs([{{id: "1_2", peer: {{id: 2, username: "robert"}}}}]);
        state.noteMessage({msg(1, 2, "bob")}, {{live: false, unread: false}});
        const afterHistory = state.dialogs.get("1_2").peer.username;
        state.noteMessage({msg(2, 2, "bobby")}, {{live: true, unread: true}});
        state.noteMessage({msg(3, 1, "alice")}, {{live: true, unread: false}});
        const summary = state.dialogs.get("1_2");
        const unknown = state.noteMessage({{...{msg(4)}, dialog_id: "2_3"}}, {{live: true, unread: true}});
        return [afterHistory, summary.peer.username, summary.unread, summary.last.seq, unknown];
    """)
    assert result == ["robert", "bobby", 1, 3, False]


async def test_dialogs_are_ordered_by_activity_then_as_listed(page: Page) -> None:
    result = await run(page, f"""
        const state = new ChatState();
        state.me = {{id: 1, username: "alice"}};
        const peer = (id) => ({{id: `1_${{id}}`, peer: {{id, username: `u${{id}}`}}}});
        state.mergeDialogs([peer(2), peer(3), peer(4), peer(5)]);
        const live = {{live: true, unread: true}};
        state.noteMessage({{...{msg(1, 4, "u4", "2026-12-01T10:00:00.000Z")}, dialog_id: "1_4"}}, live);
        state.noteMessage({{...{msg(1, 5, "u5", "2026-12-01T11:00:00.000Z")}, dialog_id: "1_5"}}, live);
        return state.orderedDialogs().map(d => d.id);
    """)
    assert result == ["1_5", "1_4", "1_2", "1_3"]


async def test_dialogs_fields_pushes_and_read_marks_merge(page: Page) -> None:
    result = await run(page, f"""
        const state = new ChatState();
        state.me = {{id: 1, username: "alice"}};
        state.mergeDialogs([{{id: "1_2", peer: {{id: 2, username: "bob", online: true}},
                              last_message: {msg(3)}, unread: 2, reads: {{"1": 1, "2": 3}}}}]);
        state.mergeDialogs([{{id: "1_3", peer: {{id: 3, username: "eve", online: false}},
                              last_message: null, unread: 0, reads: {{}}}}], 1);
        const summary = state.dialogs.get("1_2");
        const first = [summary.online, summary.last.seq, summary.unread, state.peerRead("1_2"), state.peerRead("1_3")];
        state.noteRead("1_2", 2, 2);  // an older mark changes nothing
        state.noteRead("1_2", 2, 5);
        state.setOnline(2, false);
        state.renamePeer({{id: 2, username: "robert"}});
        // An `open_dialog` reply carries no presence: what is known stays.
        state.mergeDialogs([{{id: "1_2", peer: {{id: 2, username: "robert"}}}}]);
        const unknown = state.noteRead("9_9", 2, 1);
        return [first, state.peerRead("1_2"), summary.online, summary.peer.username, unknown,
                state.orderedDialogs().map(d => d.id)];
    """)
    assert result == [[True, 3, 2, 3, 0], 5, False, "robert", False, ["1_2", "1_3"]]


async def test_the_servers_order_holds_until_a_dialog_gets_a_newer_message(page: Page) -> None:
    result = await run(page, f"""
        const state = new ChatState();
        state.me = {{id: 1, username: "alice"}};
        const item = (id, last) => ({{id: `1_${{id}}`, peer: {{id, username: `u${{id}}`}}, last_message: last,
                                     unread: 0, reads: {{}}}});
        // A dialog just created (no message) is more recent activity than an old message.
        state.mergeDialogs([item(3, null), item(2, {msg(7)})]);
        state.mergeDialogs([item(4, {{...{msg(1)}, dialog_id: "1_4"}})], 2);
        const listed = state.orderedDialogs().map(d => d.id);
        state.noteMessage({{...{msg(5)}, dialog_id: "1_2"}}, {{live: false, unread: false}});  // older: stays
        const older = state.orderedDialogs().map(d => d.id);
        state.noteMessage({{...{msg(2)}, dialog_id: "1_4"}}, {{live: true, unread: true}});
        return [listed, older, state.orderedDialogs().map(d => d.id)];
    """)
    assert result == [["1_3", "1_2", "1_4"], ["1_3", "1_2", "1_4"], ["1_4", "1_3", "1_2"]]
