"""Exceptions of the chat backend. The tree::

    ChatError                      base of everything raised on purpose here
    ├── RequestError               a client request cannot be done; becomes an error frame
    │                              {"type":"error","ref":…,"code":…,"message":…} and the
    │                              connection stays open
    └── Unavailable                Redis or PostgreSQL cannot be reached right now; the caller
                                   retries with backoff, a client gets code "unavailable"

Error codes used in frames (see docs/PROTOCOL.md): bad_frame, unknown_type, invalid,
unauthenticated, username_taken, email_taken, bad_credentials, bad_token, no_such_user,
not_member, rate_limited (with retry_after_ms), unavailable, internal.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every exception the chat backend raises on purpose."""


class RequestError(ChatError):
    """A request that cannot be done; ``code`` is snake_case, ``message`` is for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Unavailable(ChatError):
    """A backing server (Redis or PostgreSQL) is unreachable right now."""
