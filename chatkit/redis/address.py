"""Where a Redis (or Valkey) server is, parsed once from a URL by a function of our own.

Understood forms (percent-encoded user names and passwords are decoded)::

    redis://[[username]:password@]host[:port][/db]      TCP; port 6379 and db 0 by default
    unix://[[username]:password@]/path/to/socket[?db=N] a Unix socket

``db`` may also come as ``?db=N`` on a redis:// URL. Anything else (another scheme, TLS's
rediss://, an unknown query option, a username without a password) is refused with a
:class:`~chatkit.settings.SettingsError` saying what was expected and what came. A password is
never part of a message, a log line or a ``repr``: :meth:`RedisAddress.__str__` shows ``***``."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from chatkit.settings import SettingsError

DEFAULT_PORT = 6379
FORMS = "redis://[[username]:password@]host[:port][/db] or unix://[[username]:password@]/path/to/socket[?db=N]"


@dataclasses.dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    # A Unix socket's path; host and port are unused when it is set.
    path: str | None = None

    def __str__(self) -> str:
        """The address as a URL fit for a log line: the password, if any, is ``***``."""
        user = self.username or ""
        creds = f"{user}:***@" if self.password is not None else ""
        if self.path is not None:
            return f"unix://{creds}{self.path}" + (f"?db={self.db}" if self.db else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{creds}{host}:{self.port}/{self.db}"

    def setup_commands(self) -> list[tuple[Any, ...]]:
        """What a new connection sends before anything else: AUTH, then SELECT unless db 0."""
        setup: list[tuple[Any, ...]] = []
        if self.password is not None:
            setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        return setup


def parse_address(url: str) -> RedisAddress:
    """The server a ``redis://`` or ``unix://`` URL names (see the module's docstring)."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"Redis URL: expected {FORMS}, got {shown} ({exc})") from None
    if parts.scheme == "rediss":
        raise SettingsError(f"Redis URL: TLS (rediss://) is not supported; expected {FORMS}, got {shown}")
    if parts.scheme not in ("redis", "unix"):
        raise SettingsError(f"Redis URL: expected {FORMS}, got {shown}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if username is not None and password is None:
        raise SettingsError(f"Redis URL: a username needs a password (user:password@), got {shown}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"db"})
    if unknown:
        raise SettingsError(f"Redis URL: the only query option understood is db, got {', '.join(unknown)} in {shown}")
    if parts.scheme == "unix":
        if not parts.path:
            raise SettingsError(f"Redis URL: expected a socket path after unix://, got {shown}")
        db = _db(options.get("db", "0"), shown)
        return RedisAddress(db=db, username=username, password=password, path=parts.path)
    if not parts.hostname:
        raise SettingsError(f"Redis URL: expected a host after redis://, got {shown}")
    db_in_path = parts.path.lstrip("/")
    if db_in_path and "db" in options and options["db"] != db_in_path:
        raise SettingsError(f"Redis URL: two different databases (/{db_in_path} and ?db={options['db']}) in {shown}")
    db = _db(db_in_path or options.get("db", "0"), shown)
    return RedisAddress(
        host=parts.hostname, port=DEFAULT_PORT if port is None else port, db=db,
        username=username, password=password,
    )


def _db(raw: str, shown: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise SettingsError(f"Redis URL: expected a database number (0 or more), got {raw!r} in {shown}")
    return int(raw)


def redact(url: str) -> str:
    """``url`` with the password, if it has one, replaced by ``***`` (the URL need not be valid:
    everything before the last ``@`` counts as credentials, so a stray ``/`` cannot leak one)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
