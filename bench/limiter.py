"""What the shared message limit costs per message (docs/PERFORMANCE.md). Timed on an embedded
Valkey, through the gateway's own Redis client, pipelined as the gateway sends them (many in
flight) and one at a time (the round trip a lone message sees):

- xadd: the forward alone, as before any limit;
- leased: what a `send` does now, a locally leased token and a lease.lua call per handful;
- limited: ratelimit.lua taking a token in the forward's own round trip, per message (what
  login and open_dialog use; once tried for messages too).

    python -m bench.limiter [--messages 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatkit import keys, ratelimit
from chatkit.envelopes import ENTRY_FIELD
from chatkit.redis import RedisClient
from chatkit.settings import Settings
from devstack.embedded import start_valkey
from gateway.limits import Leases, Policy

# A `send` request envelope as the gateway writes it: about this size.
ENTRY = b'{"gateway":"0123456789ab","conn":"0123456789ab.17","user":{"id":17,"username":"alice"},' \
        b'"frame":{"type":"send","ref":"r9","dialog_id":"17_42","text":"hello there, how are you?",' \
        b'"client_msg_id":"5b0c3f8e-7d1a-4c55-9a4e-1f2b3c4d5e6f"}}'
STREAM = "bench:requests"
MAXLEN = 100_000

Call = Callable[[int], Any]


def plain(redis: RedisClient) -> Call:
    return lambda n: redis.call("XADD", STREAM, "MAXLEN", "~", MAXLEN, "*", ENTRY_FIELD, ENTRY)


def limited(redis: RedisClient) -> Call:
    """Checked in the forwarding round trip (ratelimit.lua): what login and open_dialog use."""

    def call(n: int) -> Any:
        # One bucket per sender, 1,000 senders, never refused here.
        bucket = ratelimit.Bucket(keys.limit_bucket("messages", n % 1000), 1_000_000, 1000)
        args = ratelimit.limited_add([bucket], STREAM, MAXLEN, ENTRY_FIELD, ENTRY)
        return redis.call("EVALSHA", ratelimit.SHA, *args)

    return call


def leased(redis: RedisClient) -> Call:
    """What a `send` costs: a token from the gateway's lease (gateway/limits.py), a lease of a
    handful from Redis (lease.lua) when it has none, then the plain XADD. The default limit
    (CHAT_USER_MESSAGES_PER_SECOND 100: handfuls of 10), 1,000 senders."""
    policy = Policy.of(Settings())
    leases = Leases(window=1.0)
    loop = asyncio.get_running_loop()

    def call(n: int) -> Any:
        user = n % 1000
        xadd = redis.call("XADD", STREAM, "MAXLEN", "~", MAXLEN, "*", ENTRY_FIELD, ENTRY)
        if leases.take(user, loop.time()):
            return xadd
        args = ratelimit.lease(policy.message_bucket(user), policy.message_handful)
        leases.granted(user, policy.message_handful, loop.time())
        return asyncio.gather(redis.call("EVALSHA", ratelimit.LEASE_SHA, *args), xadd)

    return call


async def pipelined(call: Call, messages: int, window: int = 500) -> float:
    """Seconds per message with up to ``window`` in flight."""
    started = time.perf_counter()
    in_flight: list[Any] = []
    for n in range(messages):
        in_flight.append(call(n))
        if len(in_flight) >= window:
            await asyncio.gather(*in_flight)
            in_flight.clear()
    await asyncio.gather(*in_flight)
    return (time.perf_counter() - started) / messages


async def one_at_a_time(call: Call, messages: int) -> float:
    started = time.perf_counter()
    for n in range(messages):
        await call(n)
    return (time.perf_counter() - started) / messages


async def redis_seconds(redis: RedisClient) -> float:
    """Seconds Redis spent running commands since the last CONFIG RESETSTAT (INFO commandstats)."""
    info = (await redis.call("INFO", "commandstats")).decode()
    micros = 0
    for line in info.splitlines():
        if line.startswith("cmdstat_") and not line.startswith(("cmdstat_info", "cmdstat_config")):
            micros += int(line.split("usec=", 1)[1].split(",", 1)[0])
    return micros / 1e6


async def measure(url: str, messages: int, rounds: int) -> dict[str, float]:
    redis = RedisClient.from_url(url)
    try:
        await redis.call("SCRIPT", "LOAD", ratelimit.SCRIPT)
        await redis.call("SCRIPT", "LOAD", ratelimit.LEASE_SCRIPT)
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, call in (("xadd", plain(redis)), ("leased", leased(redis)), ("limited", limited(redis))):
                await redis.call("FLUSHALL")
                await redis.call("CONFIG", "RESETSTAT")
                results.setdefault(f"{name} pipelined", []).append(await pipelined(call, messages))
                results.setdefault(f"{name} Redis CPU", []).append(await redis_seconds(redis) / messages)
                results.setdefault(f"{name} one at a time", []).append(await one_at_a_time(call, messages // 10))
        return {name: statistics.median(times) * 1e6 for name, times in results.items()}
    finally:
        await redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        valkey = start_valkey(Path(root) / "valkey", appendonly=False)
        try:
            micros = asyncio.run(measure(valkey.url, options.messages, options.rounds))
        finally:
            valkey.stop()
    for name, value in micros.items():
        print(f"{name:>30}: {value:7.1f} µs per message (median of {options.rounds})")
    for way in ("leased", "limited"):
        for mode in ("pipelined", "one at a time", "Redis CPU"):
            extra = micros[f"{way} {mode}"] - micros[f"xadd {mode}"]
            print(f"{way + ' cost ' + mode:>30}: {extra:+7.1f} µs per message")


if __name__ == "__main__":
    main()
