"""RESP, the Redis wire format: the one encoder and the one reader every link uses, both from
hiredis (C). This is the only module that imports hiredis.

Replies come out as plain values: bytes for strings, int, None, lists; an error reply, at any
depth, as the :class:`~chatkit.redis.errors.ReplyError` subclass its first word names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import hiredis

from chatkit.redis.errors import ProtocolError, ReplyError

Command = tuple[Any, ...]

# ("SET", key, value) -> bytes: str, bytes, int and float arguments, as Redis expects them.
# Bound here, not wrapped, so the hot path pays one C call per command. (hiredis' stub declares
# a one-element tuple; it takes any number of arguments.)
pack: Callable[[Command], bytes] = hiredis.pack_command

# Reader.gets() returns False while a reply is still incomplete; the links compare with the
# literal False (a name here would cost a lookup per reply on the hot path).


def pack_all(commands: Iterable[Command]) -> bytes:
    """Several commands in one buffer, in order, to go out in one write."""
    return b"".join([pack(command) for command in commands])


def reader() -> hiredis.Reader:
    """A reader for one connection: ``feed(data)``, then ``gets()`` until it returns False.
    Raises :class:`ProtocolError` on bytes that are not RESP."""
    return hiredis.Reader(replyError=ReplyError, protocolError=ProtocolError)
