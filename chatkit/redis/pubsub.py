"""The subscriber link: one pub/sub connection that never goes deaf without saying so.

A pub/sub connection can die quietly (a failover, CLIENT KILL, an output-buffer limit, a
network that stops answering): the failure reported most against other chat servers is a
listener that stops hearing while its health check stays green. Here the connection is
watched: an EOF or error ends it at once, and silence is probed with PING (allowed while
subscribed); no answer within the interval counts as dead. The subscriber then reconnects with
backoff, subscribes every channel again (in chunks), and reports :class:`Reconnected`, since
anything published meanwhile was missed. ``subscribed`` is false meanwhile (readiness)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from chatkit.backoff import Backoff
from chatkit.redis import resp
from chatkit.redis.address import RedisAddress
from chatkit.redis.errors import ProtocolError, ReplyError

log = logging.getLogger(__name__)

# Silence longer than this gets a PING; no answer in as long again means the link is dead.
PROBE_SECONDS = 2.0
# A probe's timer that fires this much later than due says the process was not running (paused
# with SIGSTOP, a blocked loop): the answer may be waiting unread, so the wait starts again.
STALL_SECONDS = 1.0
# Channels per SUBSCRIBE command when resubscribing many users at once.
SUBSCRIBE_CHUNK = 1000
CONNECT_TIMEOUT = 5.0

# What the link is lost on: socket errors, EOF, bytes that are not RESP.
_LOST = (OSError, EOFError, asyncio.IncompleteReadError, ProtocolError)

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The link was lost and is back, every channel subscribed again; ``reason`` says why."""

    reason: str


class Subscriber(Generic[M]):
    """``message(channel, data)`` builds what :meth:`next_message` returns for each message,
    so a caller gets its own type without a copy per message."""

    def __init__(self, address: RedisAddress, message: Callable[[str, bytes], M]) -> None:
        self.address = address
        self._message = message
        self._channels: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = resp.reader()
        self._ready: deque[M] = deque()
        self._probing = False
        self._up = False

    @property
    def subscribed(self) -> bool:
        return self._up

    async def connect(self) -> None:
        address = self.address
        if address.path is not None:
            opening = asyncio.open_unix_connection(address.path)
        else:
            opening = asyncio.open_connection(address.host, address.port)
        reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        self._reader, self._writer, self._parser = reader, writer, resp.reader()
        self._probing = False
        commands: list[tuple[Any, ...]] = address.setup_commands()
        channels = sorted(self._channels)
        for start in range(0, len(channels), SUBSCRIBE_CHUNK):
            commands.append(("SUBSCRIBE", *channels[start:start + SUBSCRIBE_CHUNK]))
        # Subscribed only once Redis says so: a PING behind the SUBSCRIBEs comes back after
        # them, and a link that accepts bytes but delivers none never gets that far.
        commands.append(("PING", "ready"))
        writer.write(resp.pack_all(commands))
        try:
            await writer.drain()
            await asyncio.wait_for(self._until_pong(reader, b"ready"), PROBE_SECONDS)
        except BaseException:
            self._close()
            raise
        self._up = True

    async def disconnect(self) -> None:
        self._up = False
        self._close()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        self._send("SUBSCRIBE", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        self._send("UNSUBSCRIBE", channel)

    async def next_message(self) -> M | Reconnected:
        while not self._ready:
            try:
                await self._read()
            except _LOST as exc:
                return await self._reconnect(f"{type(exc).__name__}: {exc}")
        return self._ready.popleft()

    async def _until_pong(self, reader: asyncio.StreamReader, token: bytes) -> None:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                raise EOFError("connection closed by the server")
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                if isinstance(reply, list) and reply[:2] == [b"pong", token]:
                    # Whatever came in the same read after the pong is kept too.
                    while (rest := self._parser.gets()) is not False:
                        self._take(rest)
                    return
                self._take(reply)

    def _send(self, *command: str) -> None:
        # While reconnecting the channel set is replayed on connect; nothing to send now.
        if self._up and self._writer is not None and not self._writer.is_closing():
            self._writer.write(resp.pack(command))

    async def _read(self) -> None:
        if self._reader is None or not self._up:
            raise EOFError("not connected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            data = await asyncio.wait_for(self._reader.read(1 << 16), PROBE_SECONDS)
        except TimeoutError:
            if loop.time() - started > PROBE_SECONDS + STALL_SECONDS:
                # Not silence: this process was paused. Redis's answer, if any, is unread yet
                # (a loop may run due timers before reading sockets, as uvloop does).
                return
            if self._probing:
                raise EOFError(f"no answer to PING in {PROBE_SECONDS:g} s") from None
            self._probing = True
            self._send("PING")
            return
        if not data:
            raise EOFError("connection closed by the server")
        self._probing = False
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            self._take(reply)

    def _take(self, reply: Any) -> None:
        if isinstance(reply, ReplyError):
            # AUTH refused, or a command the server will not take while subscribed.
            raise EOFError(f"server error on the pub/sub connection: {reply}")
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            self._ready.append(self._message(reply[1].decode(), reply[2]))
        # subscribe/unsubscribe confirmations, OK to AUTH/SELECT and PING's pong need nothing.

    def _close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def _reconnect(self, reason: str) -> Reconnected:
        self._up = False
        self._close()
        log.warning("pub/sub connection to %s lost (%s); resubscribing", self.address, reason)
        backoff = Backoff()
        while True:
            try:
                await self.connect()
            except (*_LOST, TimeoutError) as exc:
                delay = backoff.next_delay()
                log.warning("pub/sub reconnect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            log.info("pub/sub resubscribed to %d channels", len(self._channels))
            return Reconnected(reason)
