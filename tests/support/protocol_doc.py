"""Numbers that docs/PROTOCOL.md promises, read from the doc itself, so that a test checks the
promise as written rather than whatever constant the code happens to use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


@cache
def _text() -> str:
    # One line per sentence is not guaranteed: let the patterns span line breaks.
    return " ".join(PROTOCOL_MD.read_text(encoding="utf-8").split())


def number(pattern: str) -> int:
    """The integer captured by ``pattern``'s one group; fails naming the pattern if the doc no
    longer says it (a test must not go on with a number the doc does not give)."""
    found = re.findall(pattern, _text())
    if len(found) != 1:
        raise AssertionError(f"docs/PROTOCOL.md: expected one match for {pattern!r}, got {found!r}")
    return int(found[0])


@dataclass(frozen=True)
class Bounds:
    """Field rules and the sync cap, as docs/PROTOCOL.md states them."""

    username_max: int
    email_max: int
    password_max: int
    client_msg_id_max: int
    text_max_default: int
    sync_max_messages: int
    sync_max_text: int


def bounds() -> Bounds:
    # The doc writes ranges with an en dash (U+2013).
    return Bounds(
        username_max=number(r"`username` 3[-\u2013](\d+) of"),
        email_max=number(r"`email` like `name@example\.org`, at most (\d+);"),
        password_max=number(r"`password` 8[-\u2013](\d+) characters"),
        client_msg_id_max=number(r"`client_msg_id` 1[-\u2013](\d+) characters"),
        text_max_default=number(r"`text` 1[-\u2013](\d+) characters after trimming"),
        sync_max_messages=number(r"A reply is capped \((\d+) messages or about \d+ KiB of text\)"),
        sync_max_text=1024 * number(r"A reply is capped \(\d+ messages or about (\d+) KiB of text\)"),
    )
