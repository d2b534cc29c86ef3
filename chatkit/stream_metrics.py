"""Stream gauges sampled from Redis when Prometheus scrapes: each service reports the stream it
consumes and its own group (and storage_worker the dead-letter stream), so replicas report the
same values and dashboards take ``max`` over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from chatkit import metrics
from chatkit.redis import RedisClient


@dataclass(frozen=True, slots=True)
class Watched:
    # The name the gauges carry: a stream, or the family of a partitioned one (chatkit/keys.py).
    stream: str
    # The group whose lag and pending count to report; None: the stream's length only.
    group: str | None = None
    # A partitioned stream's partitions, summed into the family's gauges (consumers: the most
    # any partition has); empty: ``stream`` itself.
    partitions: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.partitions or (self.stream,)


def group_fields(reply: object, group: str) -> dict[str, Any] | None:
    """The fields of ``group`` in an ``XINFO GROUPS`` reply (a list of flat field/value lists),
    or None when the stream has no such group."""
    for row in cast(list[list[Any]], reply or []):
        fields = {_text(row[i]): row[i + 1] for i in range(0, len(row) - 1, 2)}
        if _text(fields.get("name", b"")) == group:
            return fields
    return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamSampler:
    def __init__(self, redis: RedisClient, watched: list[Watched]) -> None:
        self.redis = redis
        self.watched = watched
        self._length = {w.stream: metrics.STREAM_LENGTH.labels(w.stream) for w in watched}

    async def sample(self) -> list[str]:
        """Refresh every gauge; returns what is wrong (a group that does not exist)."""
        problems: list[str] = []
        for watched in self.watched:
            lengths = [int(cast(int, await self.redis.call("XLEN", name))) for name in watched.names]
            self._length[watched.stream].set(sum(lengths))
            if watched.group is None:
                continue
            pending = consumers = lag_sum = 0
            missing = False
            for name, length in zip(watched.names, lengths, strict=True):
                fields = group_fields(await self._groups(name), watched.group)
                if fields is None:
                    problems.append(f"consumer group {watched.group} of {name} does not exist")
                    missing = True
                    break
                pending += int(fields.get("pending") or 0)
                consumers = max(consumers, int(fields.get("consumers") or 0))
                # Redis 7 / Valkey: "lag" (nil when it cannot be computed: then the stream
                # length is the honest upper bound).
                lag = fields.get("lag")
                lag_sum += int(lag) if lag is not None else length
            if missing:
                continue
            labels = (watched.stream, watched.group)
            metrics.GROUP_PENDING.labels(*labels).set(pending)
            metrics.GROUP_CONSUMERS.labels(*labels).set(consumers)
            metrics.GROUP_LAG.labels(*labels).set(lag_sum)
        return problems

    async def _groups(self, stream: str) -> object:
        if not await self.redis.call("EXISTS", stream):
            return []
        return await self.redis.call("XINFO", "GROUPS", stream)
