"""The gateway's Prometheus metrics, served at ``GET /metrics`` on its own port.

Each gateway has its own registry (tests run several in one process). Names follow Prometheus
conventions: base units (seconds), ``_total`` on counters (prometheus-client adds it), and only
bounded labels: a frame type, an error code or a close code, never a user or a dialog.

The message path pays for the frame counters per frame, so they are plain ints (:class:`Count`,
no lock: the event loop is the only writer, and a scrape runs on it too) that a collector turns
into counters at scrape time; each is bound once, here, and the hot paths reach theirs by one
dict lookup: a client frame by its struct class, a server frame by the bytes of its ``type``
(every server frame is encoded with ``type`` first, as msgspec writes a tagged struct). Types
and codes not known at start (a newer service's) get a count on first sight, bounded by the code
that sends them; a close code, which a client chooses, is one of a fixed set or ``other``. The
histograms (one observation per request or per message event) are prometheus-client's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from chatkit.wire import ClientFrame, Frame, Reply, frame_classes, frame_tag

# Seconds: a request's round trip and a message's delivery are milliseconds when all is well;
# the top buckets show the deadline (CHAT_REQUEST_TIMEOUT_SECONDS) being approached.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Close codes counted by name; any other is "other" (a client picks its own code).
CLOSE_CODES = (1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 4008)
ERROR_CODES = (
    "bad_frame", "unknown_type", "invalid", "unauthenticated", "username_taken", "email_taken",
    "bad_credentials", "bad_token", "no_such_user", "not_member", "unavailable", "internal",
)
# Labels of client frames the gateway answered itself, without a service.
REJECTED = "rejected"  # not valid, or needs a login the connection does not have
BINARY = "binary"  # not a text frame

_TYPE_PREFIX = b'{"type":"'
_CODE_KEY = b'"code":"'
_SENT_AT_KEY = b'"sent_at":"'
_SENT_AT_LENGTH = len("2026-11-27T13:44:03.123Z")


class Count:
    """One label value's count; ``n += 1`` is the whole per-frame cost."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1


class Counts(Collector):
    """A counter family of plain :class:`Count`s, one per value of its one label."""

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.by_value: dict[str, Count] = {}
        registry.register(self)

    def labels(self, value: str) -> Count:
        return self.by_value.setdefault(value, Count())

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in self.by_value.items():
            family.add_metric([value], count.n)
        yield family


class RequestKind:
    """What the gateway counts about one client frame type, bound once."""

    __slots__ = ("latency", "login", "received", "sync", "tag", "timeouts")

    def __init__(self, tag: str, received: Count, latency: Any, timeouts: Any) -> None:
        self.tag = tag
        self.received = received
        self.latency = latency
        self.timeouts = timeouts
        # Requests the connection's next frames wait for (gateway/deadlines.py).
        self.login = tag in ("login", "auth")
        self.sync = tag == "sync"


class GatewayMetrics:
    def __init__(self, open_connections: Callable[[], int]) -> None:
        self.registry = registry = CollectorRegistry()
        # process_* and python_* as every service exports them (the default registry's collectors).
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        # The services' readiness gauge (chatkit/metrics.py), set at each scrape (gateway/app.py).
        self.ready = Gauge("chat_ready", "1 when this process's /readyz passes (checked at each scrape), else 0",
                           ["service"], registry=registry).labels("gateway")
        Gauge("chat_gateway_connections_open", "Open WebSocket connections on this gateway",
              registry=registry).set_function(lambda: open_connections())
        received = Counts("chat_gateway_frames_in", "Client frames received, by type ('rejected': "
                          "answered by the gateway itself with an error; 'binary': not a text frame)",
                          "type", registry)
        self._sent = Counts("chat_gateway_frames_out", "Frames sent to clients, by type", "type", registry)
        self._errors = Counts("chat_gateway_error_frames", "Error frames sent to clients, by code", "code",
                              registry)
        self._closes = Counts("chat_gateway_closes", "Connections closed, by WebSocket close code "
                              "('other': a code a client chose)", "code", registry)
        self.slow_consumers = Counter("chat_gateway_slow_consumer_disconnects",
                                      "Connections closed with 4008 because their client stopped reading",
                                      registry=registry)
        latency = Histogram("chat_gateway_request_seconds",
                            "From forwarding a request to a service to its reply, by request type",
                            ["type"], buckets=LATENCY_BUCKETS, registry=registry)
        timeouts = Counter("chat_gateway_request_timeouts", "Requests answered 'unavailable' by the gateway: "
                           "no reply within CHAT_REQUEST_TIMEOUT_SECONDS, or not forwarded", ["type"],
                           registry=registry)
        self.delivery = Histogram("chat_gateway_delivery_seconds",
                                  "From a message's sent_at to its push to a connection of the peer or the "
                                  "sender's other devices (clocks of two machines)",
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self.kinds: dict[type[Frame], RequestKind] = {}
        for cls in frame_classes(ClientFrame):
            tag = frame_tag(cls)
            self.kinds[cls] = RequestKind(
                tag, received.labels(tag), latency.labels(tag), timeouts.labels(tag),
            )
        self.rejected = received.labels(REJECTED)
        self.binary = received.labels(BINARY)
        self._sent_by_type: dict[bytes, Count] = {tag.encode(): self._sent.labels(tag) for tag in _server_tags()}
        self._sent_error = self._sent_by_type[b"error"]
        self._sent_other = self._sent.labels("other")
        self._errors_by_code: dict[bytes, Count] = {code.encode(): self._errors.labels(code) for code in ERROR_CODES}
        self._closes_by_code: dict[int, Count] = {code: self._closes.labels(str(code)) for code in CLOSE_CODES}
        self._closes_other = self._closes.labels("other")

    def frame_sent(self, frame: bytes) -> None:
        """One frame to a client (called for every one: keep it cheap)."""
        if not frame.startswith(_TYPE_PREFIX):
            self._sent_other.inc()
            return
        kind = frame[9:frame.find(b'"', 9)]
        child = self._sent_by_type.get(kind)
        if child is None:
            child = self._sent_by_type[kind] = self._sent.labels(kind.decode(errors="replace"))
        child.n += 1
        if child is self._sent_error:
            self._error_sent(frame)

    def _error_sent(self, frame: bytes) -> None:
        start = frame.find(_CODE_KEY)
        if start < 0:
            return
        start += len(_CODE_KEY)
        code = frame[start:frame.find(b'"', start)]
        child = self._errors_by_code.get(code)
        if child is None:
            child = self._errors_by_code[code] = self._errors.labels(code.decode(errors="replace"))
        child.inc()

    def closed(self, code: int) -> None:
        self._closes_by_code.get(code, self._closes_other).inc()

    def delivered(self, frame: bytes) -> None:
        """A message event pushed live: how long since the message was accepted."""
        start = frame.rfind(_SENT_AT_KEY)
        if start < 0:
            return
        start += len(_SENT_AT_KEY)
        try:
            sent_at = datetime.fromisoformat(frame[start:start + _SENT_AT_LENGTH].decode()).timestamp()
        except ValueError:
            return
        self.delivery.observe(max(0.0, time.time() - sent_at))


def _server_tags() -> list[str]:
    tags: list[str] = []
    pending: list[type[Reply]] = [Reply]
    while pending:
        cls = pending.pop()
        tag = cls.__struct_config__.tag
        if isinstance(tag, str):
            tags.append(tag)
        pending.extend(cls.__subclasses__())
    return tags
