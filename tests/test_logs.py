"""chatkit/logs.py: JSON lines with process, level and request id; secrets masked in every
format, whoever logged them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from chatkit.logs import MASK, JsonFormatter, TextFormatter, redact, request_id
from chatkit.wire import Login

TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


@pytest.mark.parametrize("text, secret", [
    ('{"type":"login","username":"ann","password":"hunter2-long"}', "hunter2-long"),
    ("Login(ref='1', username='ann', password='hunter2-long')", "hunter2-long"),
    ('{"type":"auth","token":"opaque-token-value"}', "opaque-token-value"),
    (f"bad token {TOKEN} from conn 7", TOKEN),
    ("connect to postgresql://chat:db-pass-123@db:5432/chat failed", "db-pass-123"),
    ("CHAT_SECRET=s3cr3t-value set", "s3cr3t-value"),
])
def test_secrets_are_masked(text: str, secret: str) -> None:
    masked = redact(text)
    assert secret not in masked and MASK in masked, masked


def test_other_text_is_left_alone() -> None:
    text = "stored 12 messages for dialog 3:7 in 4.1ms; password policy unchanged"
    assert redact(text) == text


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"token={TOKEN}")
        except ValueError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("chatkit.service", logging.WARNING, __file__, 1, message, args, exc_info)


def test_json_lines_carry_process_level_and_request_id() -> None:
    formatter = JsonFormatter("chat_service")

    async def handling() -> str:
        request_id.set("1733-0")
        return formatter.format(_record("request %s refused: %r", "x", Login(username="ann", password="pw-123456")))

    line = asyncio.run(handling())
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["process"] == "chat_service" and fields["level"] == "WARNING"
    assert fields["logger"] == "chatkit.service" and fields["request_id"] == "1733-0"
    assert "pw-123456" not in line and fields["message"].startswith("request x refused")
    outside = json.loads(formatter.format(_record("idle")))
    assert "request_id" not in outside


def test_exceptions_are_one_line_and_masked() -> None:
    for formatter in (JsonFormatter("auth_service"), TextFormatter("auth_service")):
        out = formatter.format(_record("failed", exc=True))
        assert TOKEN not in out and "ValueError" in out
    assert "\n" not in JsonFormatter("auth_service").format(_record("failed", exc=True))
