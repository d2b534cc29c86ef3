"""The Redis layer: every byte between this project and Redis (or Valkey) goes through here.

One module per idea:

- address.py  ``parse_address(url) -> RedisAddress``: the URL parsed once, by our own rules;
- errors.py   the exception tree, one mapping from error replies to classes, ``REDIS_DOWN``;
- resp.py     the one RESP encoder and reader (hiredis);
- wire.py     one connection as an asyncio protocol: a write per loop turn, replies in order;
- link.py     the pipelined command link: AUTH/SELECT, ``call``, ``transaction``, ``eval_script``;
- client.py   :class:`RedisClient`, what services hold: commands on one shared link, blocking
              reads on links of their own; where Redis Cluster's routing by slot will go;
- pubsub.py   the subscriber link: probed with PING, resubscribed with backoff.

The backoff itself (chatkit/backoff.py) is shared with PostgreSQL's retry loops."""

from chatkit.redis.address import RedisAddress, parse_address
from chatkit.redis.client import RedisClient
from chatkit.redis.errors import (
    REDIS_DOWN,
    BusyGroup,
    ConnectionLost,
    NoGroup,
    NoScript,
    RedisError,
    ReplyError,
    Unreachable,
    first_error,
)
from chatkit.redis.link import Link
from chatkit.redis.pubsub import Reconnected, Subscriber

__all__ = [
    "REDIS_DOWN",
    "BusyGroup",
    "ConnectionLost",
    "Link",
    "NoGroup",
    "NoScript",
    "Reconnected",
    "RedisAddress",
    "RedisClient",
    "RedisError",
    "ReplyError",
    "Subscriber",
    "Unreachable",
    "first_error",
    "parse_address",
]
