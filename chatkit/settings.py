"""One typed settings object, built once from the environment in each service's ``main``
and passed down. Nothing else in the code reads ``os.environ``."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path

PREFIX = "CHAT_"
# The web chat's static files (index.html, modules, CSS), in the source tree beside the packages.
DEFAULT_SITE_DIR = Path(__file__).resolve().parent.parent / "infra" / "site"


class SettingsError(ValueError):
    """An environment variable holds something that is not a valid setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    # Where the shared servers are. The launcher fills these in when it starts embedded ones.
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # Gateway listening address.
    host: str = "127.0.0.1"
    port: int = 8000
    # Launcher only: how many gateways to start, on consecutive ports from `port`.
    gateways: int = 1
    # Launcher only: 1 runs the machine's nginx in front of the gateways, from infra/nginx.conf
    # (devstack/nginx.py), on this port of 127.0.0.1.
    nginx: int = 0
    nginx_port: int = 8080
    # Launcher only: where embedded servers keep their data between runs.
    data_dir: Path = Path(".chat")
    # HMAC secret for login tokens; every auth_service replica needs the same one.
    secret: str = ""
    token_ttl_seconds: int = 24 * 3600
    max_text_length: int = 4096
    history_default_limit: int = 50
    history_max_limit: int = 100
    # Name of this process among the consumers of a stream group; must be unique per replica.
    instance: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # How many stream entries a service handles at once.
    service_concurrency: int = 64
    # A pending stream entry idle this long is taken over by another replica (XAUTOCLAIM).
    claim_idle_ms: int = 15_000
    # After this many failed deliveries a stream entry goes to the dead-letter stream.
    max_deliveries: int = 5
    # Storage worker: most entries written in one batch (one call, one commit). Larger batches
    # spread the per-dialog statement (about 50 µs of PostgreSQL each) over more rows; 4,000
    # beat 2,000 by a tenth in the storage bench, and 6,000 or 8,000 gained nothing more.
    storage_batch_size: int = 4000
    # Storage worker: after a read that did not fill a batch, wait this long before the next,
    # so that under steady traffic each batch carries several rows per dialog instead of one
    # or two (each dialog's insert costs PostgreSQL about 50 µs besides its rows). Delivery
    # and history do not wait for storage: unstored messages are served from the pending sets.
    storage_linger_ms: int = 100
    # Gateway: how long a forwarded request waits for its service's answer; past it the client
    # gets `unavailable` for it, and a late answer is dropped.
    request_timeout_seconds: float = 5.0
    # PostgreSQL keeps, per connection and for its whole life, about 15 KB of catalogue cache
    # for every table the connection touched: with a table per dialog, a long-lived connection
    # grows toward the size of the whole catalogue. A connection is therefore replaced once it
    # may have touched this many dialog tables (the storage worker's lanes count the tables;
    # a service pool counts statements, each touching at most one), which bounds it to about
    # 30 MB above its start, and after this many seconds of life whatever it touched.
    database_max_tables_per_connection: int = 2000
    database_connection_life_seconds: int = 900
    # Gateway: frames queued for one slow client before it is disconnected.
    send_queue_limit: int = 1024
    # How long a send's idempotency record (client_msg_id -> the message's seq and id, about
    # 150 bytes with its key) is kept: a resend after this long makes a new message. Minutes,
    # long enough for a client's retries across a reconnect; it bounds Redis memory per message.
    client_msg_id_ttl_seconds: int = 600
    # Partitions of the data layout (chatkit/partitions.py): request and messages streams, and
    # the hash tag of every dialog's keys. A power of two up to 1024. Changing it is a migration.
    partitions: int = 16
    log_level: str = "INFO"
    # Presence: a gateway's heartbeat lives this long (renewed every third of it); a gateway
    # killed outright has its users shown offline in `dialogs` within this time, and announced
    # offline to their peers within 4/3 of it (chat_service sweeps every third of it).
    presence_ttl_seconds: float = 30.0
    # Typing events forwarded per user and dialog per second, at most; the rest are dropped.
    typing_per_second: int = 3
    # "text" (one readable line per record) or "json" (one JSON object per line, for a log shipper).
    log_format: str = "text"
    # auth_service, chat_service, storage_worker: port of the small HTTP server with /healthz,
    # /readyz and /metrics (0: none). The launcher gives each process a free one.
    metrics_port: int = 0
    # Address that server listens on (0.0.0.0 in containers, so Prometheus and healthchecks reach it).
    metrics_host: str = "127.0.0.1"
    # Gateway: the directory served at `/` (the web chat). Missing: the gateway serves no site.
    site_dir: Path = dataclasses.field(default_factory=lambda: DEFAULT_SITE_DIR)
    # Limits on abuse (SECURITY.md; gateway/limits.py, chatkit/ratelimit.py). A refused request
    # gets error `rate_limited` with `retry_after_ms`. Messages one user may send per second,
    # over all their connections on every gateway (a token bucket holding one second's worth).
    user_messages_per_second: int = 100
    # Requests of any kind one connection may make per second (counted in its gateway).
    connection_requests_per_second: int = 200
    # `login` and `register` attempts per username, and per client address, per minute.
    login_attempts_per_minute: int = 10
    login_attempts_per_address_per_minute: int = 600
    # `open_dialog` requests one user may make per minute.
    dialogs_opened_per_minute: int = 60
    # Logged-in connections one user may hold on one gateway; more are refused at login.
    connections_per_user: int = 100
    # Open WebSockets per gateway; beyond it a handshake is refused with HTTP 503.
    connections_per_gateway: int = 20_000
    # Refusals in a row after which a connection is closed with 4029.
    rate_limit_strikes: int = 50
    # Origins allowed to open a WebSocket, comma-separated (e.g. `https://chat.example.org`);
    # `*` allows any. A handshake without an Origin header (not a browser) is always allowed.
    allowed_origins: str = "*"
    # Addresses (or CIDR networks), comma-separated, of proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``CHAT_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            name = PREFIX + field.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(name, field.type, raw)
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The ``CHAT_*`` variables that rebuild these settings in a child process."""
        return {
            PREFIX + field.name.upper(): str(getattr(self, field.name)) for field in dataclasses.fields(self)
        }


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _convert(name: str, type_name: object, raw: str) -> object:
    # With `from __future__ import annotations` the field types arrive as strings.
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected {kind}, got {raw!r}") from None
    return raw
