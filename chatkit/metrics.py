"""The services' Prometheus metrics (auth_service, chat_service, storage_worker), in the
process's default registry; the gateway's are in gateway/metrics.py.

Conventions: base units (seconds), counters end in ``_total``, labels take a few known values
only (a service, a frame type, an outcome, a stream, a group), never a user or dialog id. The
hot paths use children bound once (:class:`RequestMetrics`), not ``.labels()`` per request.
README "Operating" says what each one means and what to do about it."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

# Request handling: 1 ms to 10 s (a login's password hash takes tens of ms; a send, about one).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Storage batches: from one entry to CHAT_STORAGE_BATCH_SIZE's default and beyond.
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000)
_WRITE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# What became of a request a service took from its stream.
OUTCOMES = ("ok", "rejected", "unavailable", "internal", "redis_down", "undecodable")

REQUESTS = Counter(
    "chat_requests_handled_total",
    "Requests a service took from its stream, by frame type and outcome (ok; rejected: an error "
    "reply the client caused; unavailable; internal: a bug; redis_down: left pending; undecodable: "
    "dead-lettered)",
    ["service", "type", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "chat_request_handle_seconds",
    "Time from taking a request off the stream to publishing its answer, by frame type",
    ["service", "type"],
    buckets=_LATENCY_BUCKETS,
)
DEAD_LETTERED = Counter(
    "chat_dead_lettered_total",
    "Stream entries this process moved to the dead-letter stream chat:dead, by source stream",
    ["stream"],
)
READY = Gauge("chat_ready", "1 when this process's /readyz passes (checked at each scrape), else 0", ["service"])

# Sampled from Redis at each scrape (chatkit/stream_metrics.py).
STREAM_LENGTH = Gauge("chat_stream_length", "Entries in a stream (XLEN)", ["stream"])
GROUP_LAG = Gauge(
    "chat_stream_group_lag", "Entries of the stream the group has not read yet (XINFO GROUPS lag)", ["stream", "group"]
)
GROUP_PENDING = Gauge(
    "chat_stream_group_pending", "Entries read by the group but not acknowledged yet", ["stream", "group"]
)
GROUP_CONSUMERS = Gauge("chat_stream_group_consumers", "Consumers known to the group", ["stream", "group"])

# storage_worker.
STORAGE_BATCH_ENTRIES = Histogram(
    "chat_storage_batch_entries", "Stream entries in one storage batch", buckets=_BATCH_BUCKETS
)
STORAGE_WRITE_SECONDS = Histogram(
    "chat_storage_write_seconds", "Time to write one batch to PostgreSQL (one transaction)", buckets=_WRITE_BUCKETS
)
STORAGE_ROWS = Counter("chat_storage_rows_written_total", "Message rows inserted into dialog tables")
STORAGE_DUPLICATES = Counter(
    "chat_storage_duplicates_total", "Messages already stored when written again (a redelivery)"
)
STORAGE_FAILED = Counter(
    "chat_storage_failed_total", "Messages a batch could not store, left pending for a retry"
)


class RequestMetrics:
    """One service's request counters and latency, children bound on first use per label set
    (frame types and outcomes are a handful each, so the cache stays small)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._counts: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def done(self, frame_type: str, outcome: str, started: float) -> None:
        """Count one request, ``started`` being its ``time.perf_counter()`` at the start."""
        key = (frame_type, outcome)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = REQUESTS.labels(self.service, frame_type, outcome)
        counter.inc()
        latency = self._latency.get(frame_type)
        if latency is None:
            latency = self._latency[frame_type] = HANDLE_SECONDS.labels(self.service, frame_type)
        latency.observe(time.perf_counter() - started)
