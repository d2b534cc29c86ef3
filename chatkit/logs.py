"""Log records as text or as one JSON object per line (CHAT_LOG_FORMAT), with the request being
handled (a context variable the services set) and with secrets masked in every record: a
password, a token, a secret, or the password of a URL never reaches the log, whatever logged it
(a frame's repr, an exception from a driver quoting its DSN)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

# The stream entry id of the request this task is handling ("" outside a request).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_SECRET_FIELD = re.compile(
    r"""(?P<key>["']?(?:password|token|secret)["']?\s*[:=]\s*)(?P<q>["']?)(?P<value>[^"',\s)}]*)(?P=q)""",
    re.IGNORECASE,
)
# A JWT anywhere (header.payload.signature, the header always base64 of '{"').
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _SECRET_FIELD.sub(lambda m: f"{m['key']}{m['q']}{MASK}{m['q']}", text)


class TextFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.get()
        return redact(f"{line} [request {rid}]" if rid else line)


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "process": self.process,
            "pid": record.process,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            fields["request_id"] = rid
        if record.exc_info:
            fields["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(fields, ensure_ascii=False)


def configure(process: str, level: str, fmt: str) -> None:
    """Root logging for a process: one handler on stderr, ``fmt`` "text" or "json"."""
    if fmt not in ("text", "json"):
        raise ValueError(f"CHAT_LOG_FORMAT: expected text or json, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(process) if fmt == "json" else TextFormatter(process)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
