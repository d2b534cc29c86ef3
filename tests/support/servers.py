"""The Valkey and PostgreSQL servers a test session runs on (tests/conftest.py starts them)."""

from __future__ import annotations

from dataclasses import dataclass

from devstack.embedded import EmbeddedServer


@dataclass(frozen=True)
class Servers:
    redis_url: str
    database_url: str
    valkey: EmbeddedServer | None = None
    postgres: EmbeddedServer | None = None
