"""Rate limits that hold across gateways: token buckets in Redis, used two ways.

- ratelimit.lua checks a request's buckets in the same round trip that forwards it (an EVALSHA
  instead of the XADD it would have been): for the rare, costly requests (login, register,
  open_dialog), whose count must be exact.
- lease.lua hands a gateway a handful of a bucket's tokens to spend locally: for messages, the
  hot path, which then costs Redis one script call per handful instead of one per message
  (docs/PERFORMANCE.md). A user may get up to a handful less one more per extra gateway they
  use at once (gateway/limits.py, Leases).

Limits kept by one gateway alone (requests per connection) are gateway/limits.py's.

A bucket holds ``capacity`` tokens and refills them evenly over ``window_ms``; each request
takes one from every bucket it is counted in (a login: its username's and its address's), or,
when one of them is empty, takes none and is refused with how long to wait."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

SCRIPT = resources.files("chatkit").joinpath("ratelimit.lua").read_text()
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
LEASE_SCRIPT = resources.files("chatkit").joinpath("lease.lua").read_text()
LEASE_SHA = hashlib.sha1(LEASE_SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit applied to one subject: its key (chatkit.keys.limit_bucket) and its rate."""

    key: str
    capacity: int
    window_ms: int


def limited_add(
    buckets: Sequence[Bucket], stream: str, maxlen: int, field: bytes, entry: bytes,
) -> tuple[str | int | bytes, ...]:
    """The arguments after EVALSHA/EVAL's script for: take a token from each bucket, then XADD
    ``entry`` under ``field`` to ``stream`` (trimmed to about ``maxlen``). The script answers 0
    when added, else the milliseconds until every bucket has a token again."""
    if not buckets:
        raise ValueError("expected at least one bucket; a request limited by none is a plain XADD")
    keys = [bucket.key for bucket in buckets]
    rates: list[int] = []
    for bucket in buckets:
        if bucket.capacity < 1 or bucket.window_ms < 1:
            raise ValueError(f"expected a bucket of 1 or more tokens over 1 or more ms, got {bucket}")
        rates += (bucket.capacity, bucket.window_ms)
    return (len(keys) + 1, *keys, stream, len(buckets), *rates, maxlen, field, entry)


def lease(bucket: Bucket, want: int) -> tuple[str | int, ...]:
    """The arguments after EVALSHA/EVAL's script for lease.lua: take up to ``want`` tokens.
    The script answers [granted, 0] or, when the bucket is empty, [0, ms to wait]."""
    if want < 1:
        raise ValueError(f"expected to lease 1 or more tokens, got {want}")
    return (1, bucket.key, bucket.capacity, bucket.window_ms, want)
