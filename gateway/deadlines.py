"""Requests this gateway forwarded and has not seen answered: each one's deadline, and the
login a connection's next frames wait for (docs/PROTOCOL.md, "Deadlines" and "Order").

One table for the whole gateway, with an entry only while its request is in flight (an idle
connection has none), and one timer, armed for the oldest entry. Every request gets the same
timeout, so deadlines fall in the order requests were numbered, which is the table's order (a
dict keeps insertion order): expiring is taking entries from the front.

- A reply names the request it answers (chatkit.envelopes.ConnReply.request): :meth:`take`
  removes its entry; a reply whose entry is gone came past its deadline and is dropped.
- Past the deadline, or when the request could not even be forwarded (:meth:`fail`), the client
  gets ``{"type":"error","code":"unavailable"}`` with the request's ``ref``, and a `sync` lets go
  of the live events held for its reply (gateway/relay.py's ``sync_failed``).
- While a `login` or `auth` is in flight on a connection, :meth:`login_settled` makes the
  connection's next frame wait for its answer, so that frame is handled as the user the answer
  establishes. The wait is bounded by the login's own deadline, and what waits behind it is
  bounded too: the connection's reader is what waits, and the server stops reading the socket
  while a received frame is not taken (uvicorn pauses the transport), so the client's further
  frames stay in the kernel's buffers, not in the gateway.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from gateway.connections import Connection
from gateway.metrics import RequestKind
from gateway.protocol import error_frame
from gateway.relay import sync_failed

log = logging.getLogger(__name__)

# Expiry runs this much after the oldest deadline, so one timer call handles every request
# that fell due in that span rather than one call each.
EXPIRY_SLACK_SECONDS = 0.05


class _InFlight:
    __slots__ = ("conn", "kind", "ref", "started")

    def __init__(self, conn: Connection, kind: RequestKind, ref: str | None, started: float) -> None:
        self.conn = conn
        self.kind = kind
        self.ref = ref
        self.started = started


class Deadlines:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._numbers = itertools.count(1)
        self._in_flight: dict[int, _InFlight] = {}
        # conn id -> resolved when the login or auth in flight on that connection is answered.
        self.logins: dict[str, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._in_flight)

    def begin(self, conn: Connection, kind: RequestKind, ref: str | None) -> int:
        """A request is being forwarded: its number, to put in the envelope."""
        loop = asyncio.get_running_loop()
        number = next(self._numbers)
        started = loop.time()
        self._in_flight[number] = _InFlight(conn, kind, ref, started)
        if kind.login and conn.id not in self.logins:
            self.logins[conn.id] = loop.create_future()
        if self._timer is None:
            self._timer = loop.call_at(started + self.timeout + EXPIRY_SLACK_SECONDS, self._expire)
        return number

    async def login_settled(self, conn: Connection) -> None:
        """Wait until the login or auth in flight on ``conn`` (if any) is answered or expired."""
        waiting = self.logins.get(conn.id)
        if waiting is not None:
            await asyncio.shield(waiting)

    def take(self, number: int) -> _InFlight | None:
        """The reply to request ``number`` came: its entry, or None when it came too late."""
        entry = self._in_flight.pop(number, None)
        if entry is not None:
            entry.kind.latency.observe(asyncio.get_running_loop().time() - entry.started)
        return entry

    def settled(self, entry: _InFlight) -> None:
        """The reply to ``entry`` has been handled (a login bound its user): frames waiting
        behind it on its connection may go on."""
        if entry.kind.login:
            waiting = self.logins.pop(entry.conn.id, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    def fail(self, number: int, message: str) -> None:
        """Request ``number`` will get no reply: tell its client (if it has not been answered)."""
        entry = self._in_flight.pop(number, None)
        if entry is not None:
            self._give_up(entry, message)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiting in self.logins.values():
            if not waiting.done():
                waiting.set_result(None)
        self.logins.clear()
        self._in_flight.clear()

    def _give_up(self, entry: _InFlight, message: str) -> None:
        entry.kind.timeouts.inc()
        conn = entry.conn
        conn.push(error_frame("unavailable", message, ref=entry.ref))
        if entry.kind.sync:
            sync_failed(conn)
        self.settled(entry)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        oldest_kept = loop.time() - self.timeout
        # One pass to find them, then remove them: taking the first key again after each
        # removal would skip every removed slot again (quadratic when a service is down).
        due: list[int] = []
        for number, entry in self._in_flight.items():
            if entry.started > oldest_kept:
                self._timer = loop.call_at(entry.started + self.timeout + EXPIRY_SLACK_SECONDS, self._expire)
                break
            due.append(number)
        message = (
            f"no answer within {self.timeout:g} s; try again shortly (a send may still have been "
            "accepted: resend it with the same client_msg_id)"
        )
        for number in due:
            self._give_up(self._in_flight.pop(number), message)
        if due:
            log.warning("%d request(s) got no answer within %g s; answered 'unavailable'", len(due), self.timeout)
