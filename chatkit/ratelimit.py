"""Rate limits that hold across gateways: token buckets in Redis, checked by ratelimit.lua in
the same round trip that forwards the request (an EVALSHA instead of the XADD it would have
been), so a limited request costs no extra round trip. Limits kept by one gateway alone
(requests per connection) are gateway/limits.py's.

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
