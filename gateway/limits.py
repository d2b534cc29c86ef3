"""The gateway's limits on abuse, as pure code (SECURITY.md): which shared buckets a request is
counted in (chatkit/ratelimit.py checks those in Redis), requests per connection (counted here,
one gateway's own business), refusals in a row that close a connection, the Origin check, and
the client's address. No sockets, no Redis: the node (gateway/node.py) calls these."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass

from chatkit import keys
from chatkit.ratelimit import Bucket
from chatkit.settings import Settings
from chatkit.wire import ClientFrame, Login, OpenDialog, Register, Send, UserRef

# Close code when refusals go on (docs/PROTOCOL.md).
CLOSE_TOO_MANY_REQUESTS = 4029
TOO_MANY_REQUESTS_REASON = "too many requests: slow down"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBucket:
    """``capacity`` tokens refilled evenly over ``window`` seconds; one per request."""

    __slots__ = ("at", "tokens")

    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.at = now

    def take(self, capacity: float, window: float, now: float) -> float:
        """Take a token: 0.0, or the seconds until one is there (nothing taken then)."""
        if now > self.at:
            self.tokens = min(capacity, self.tokens + (now - self.at) * capacity / window)
            self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * window / capacity


class ConnectionLimits:
    """One connection's own counters: its request bucket and its refusals in a row."""

    __slots__ = ("bucket", "strikes")

    def __init__(self, capacity: float, now: float) -> None:
        self.bucket = TokenBucket(capacity, now)
        self.strikes = 0

    def refused(self, max_strikes: int) -> bool:
        """Count a refusal; True when they have gone on long enough to close the connection."""
        self.strikes += 1
        return self.strikes >= max_strikes

    def passed(self) -> None:
        self.strikes = 0


class Lease:
    __slots__ = ("expires", "tokens")

    def __init__(self, tokens: int, expires: float) -> None:
        self.tokens = tokens
        self.expires = expires


class Leases:
    """Tokens of shared buckets (chatkit/lease.lua) that this gateway leased and spends
    locally, by subject (a user id). A lease lasts one refill window: tokens not spent by then
    go unused, so a gateway never sits on more than a handful."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._leases: dict[int, Lease] = {}

    def take(self, subject: int, now: float) -> bool:
        """Spend a leased token; False when there is none (lease more, or refuse)."""
        lease = self._leases.get(subject)
        if lease is None or lease.tokens < 1 or lease.expires <= now:
            return False
        lease.tokens -= 1
        return True

    def granted(self, subject: int, tokens: int, now: float) -> None:
        """Redis granted ``tokens``; one of them is spent at once, on the request that asked."""
        self._leases[subject] = Lease(tokens - 1, now + self.window)

    def drop(self, subject: int) -> None:
        self._leases.pop(subject, None)

    def __len__(self) -> int:
        return len(self._leases)


def limited_what(frame: ClientFrame) -> str:
    """What a refused request was too many of, for the error's message."""
    if isinstance(frame, Send):
        return "messages"
    if isinstance(frame, OpenDialog):
        return "dialogs opened"
    return "login attempts"


def retry_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits of one gateway, from its Settings."""

    requests_per_second: int
    messages_per_second: int
    logins_per_minute: int
    logins_per_address_per_minute: int
    dialogs_per_minute: int
    connections_per_user: int
    connections_per_gateway: int
    strikes: int
    origins: frozenset[str] | None  # None: any origin
    trusted_proxies: tuple[Network, ...]

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            requests_per_second=settings.connection_requests_per_second,
            messages_per_second=settings.user_messages_per_second,
            logins_per_minute=settings.login_attempts_per_minute,
            logins_per_address_per_minute=settings.login_attempts_per_address_per_minute,
            dialogs_per_minute=settings.dialogs_opened_per_minute,
            connections_per_user=settings.connections_per_user,
            connections_per_gateway=settings.connections_per_gateway,
            strikes=settings.rate_limit_strikes,
            origins=parse_origins(settings.allowed_origins),
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )

    def connection_limits(self, now: float) -> ConnectionLimits:
        return ConnectionLimits(self.requests_per_second, now)

    def admit(self, limits: ConnectionLimits, now: float) -> int:
        """A request on a connection: 0 to go on, else the ms to wait (requests per connection)."""
        wait = limits.bucket.take(self.requests_per_second, 1.0, now)
        return retry_ms(wait) if wait else 0

    def buckets(self, frame: ClientFrame, user: UserRef | None, address: str) -> list[Bucket]:
        """The shared buckets this request is counted in (none: forwarded as it is)."""
        if isinstance(frame, Login | Register):
            name = frame.username.lower()
            return [
                Bucket(keys.limit_bucket("login", name), self.logins_per_minute, 60_000),
                Bucket(keys.limit_bucket("login-address", address), self.logins_per_address_per_minute, 60_000),
            ]
        if isinstance(frame, OpenDialog) and user is not None:
            return [Bucket(keys.limit_bucket("dialogs", user.id), self.dialogs_per_minute, 60_000)]
        return []

    def message_bucket(self, user_id: int) -> Bucket:
        """The shared bucket of a user's messages: spent through Leases, not per request."""
        return Bucket(keys.limit_bucket("messages", user_id), self.messages_per_second, 1000)

    @property
    def message_handful(self) -> int:
        """Message tokens a gateway leases at a time: a tenth of a second's worth."""
        return max(1, self.messages_per_second // 10)

    def origin_allowed(self, origin: str | None) -> bool:
        """A browser's Origin header against the allowed list; no header (not a browser) passes."""
        return origin is None or self.origins is None or origin.rstrip("/").lower() in self.origins

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """Whose request this is: the socket's peer, or, when the peer is a trusted proxy, the
        nearest address in X-Forwarded-For that is not a trusted proxy itself."""
        address = peer or "unknown"
        if forwarded_for is None or not self._trusted(address):
            return address
        for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
            if not hop:
                continue
            address = hop
            if not self._trusted(hop):
                break
        return address

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def parse_origins(setting: str) -> frozenset[str] | None:
    """CHAT_ALLOWED_ORIGINS: ``*`` (any), or origins like ``https://chat.example.org``."""
    origins = [origin.strip().rstrip("/").lower() for origin in setting.split(",") if origin.strip()]
    if not origins or "*" in origins:
        return None
    return frozenset(origins)


def parse_networks(setting: str | Iterable[str]) -> tuple[Network, ...]:
    """CHAT_TRUSTED_PROXIES: addresses or networks, comma-separated."""
    parts = setting.split(",") if isinstance(setting, str) else list(setting)
    networks = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"CHAT_TRUSTED_PROXIES: expected addresses or networks like 10.0.0.0/8, got {part!r}") \
                from None
    return tuple(networks)
