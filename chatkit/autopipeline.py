"""Automatic pipelining on one Redis connection: every command is written to the socket at the
end of the current loop turn together with whatever other tasks issued meanwhile (one write
for many commands), replies are parsed by hiredis and matched to their commands in order. No
command waits for another's reply before being sent, commands run in the order they were
issued, and a command costs a few microseconds of Python instead of redis-py's per-command
checkout, retry and parsing machinery. The idea of ioredis' enableAutoPipelining.

Replies are raw RESP values (bytes, int, list, None); errors raise redis-py's exception classes
(ResponseError, NoScriptError, ...). A lost connection fails the commands in flight with
ConnectionError; the next command reconnects. Blocking commands (XREADGROUP BLOCK, BLPOP) would
hold up everything behind them and do not belong here."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

Command = tuple[Any, ...]

CONNECT_TIMEOUT = 5.0


class _Link(asyncio.Protocol):
    """One connection: writes go out once per loop turn, replies resolve futures in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.lost = False
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        self.outgoing.append(packed)
        self.waiting.append(future)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.outgoing and not self.lost:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                log.error("a Redis reply arrived that no command was waiting for: %r", reply)
                continue
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.gone.done():
            self.gone.set_result(None)
        error = ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


def _error(message: str) -> Exception:
    from redis._parsers.base import BaseParser  # redis-py's own mapping of error prefixes

    error: Exception = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


class AutoPipeline:
    def __init__(self, options: Mapping[str, Any]) -> None:
        """``options``: host, port, db, username, password, as redis-py names them."""
        self._host = str(options.get("host", "127.0.0.1"))
        self._port = int(options.get("port", 6379))
        self._db = int(options.get("db", 0) or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    @classmethod
    def from_url(cls, url: str) -> AutoPipeline:
        return cls(dict(parse_url(url)))

    @classmethod
    def beside(cls, redis: Redis) -> AutoPipeline:
        """A pipeline to the same server as a redis-py client, on a connection of its own."""
        return cls(redis.connection_pool.connection_kwargs)

    @property
    def backlog(self) -> int:
        """Commands sent whose replies have not come back yet."""
        return 0 if self._link is None else len(self._link.waiting)

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """Issue one command (``"PUBLISH", channel, data``); await the result. The command is
        queued at once, so callers that don't await still keep their order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        packed = hiredis.pack_command(command)
        link = self._link
        if link is not None and not link.lost:
            link.send(packed, future)
        else:
            self._send_when_connected(packed, future)
        return future

    async def eval_script(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA, falling back to EVAL when the server lost its script cache (a restart)."""
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        link, self._link = self._link, None
        if link is not None and link.transport is not None:
            link.flush()
            link.transport.close()
            await asyncio.wait([link.gone], timeout=CONNECT_TIMEOUT)

    def _send_when_connected(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        connecting = self._connecting

        def sent(done: asyncio.Task[_Link]) -> None:
            if future.done():
                return
            if done.cancelled():
                future.set_exception(ConnectionError("Redis connection attempt cancelled"))
            elif (exc := done.exception()) is not None:
                future.set_exception(ConnectionError(f"Redis unreachable: {exc}"))
            else:
                done.result().send(packed, future)

        connecting.add_done_callback(sent)

    async def _connect(self) -> _Link:
        try:
            loop = asyncio.get_running_loop()
            _, link = await asyncio.wait_for(
                loop.create_connection(_Link, self._host, self._port), CONNECT_TIMEOUT
            )
            setup: list[Command] = []
            if self._password is not None:
                setup.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
            if self._db:
                setup.append(("SELECT", self._db))
            for command in setup:
                ready: asyncio.Future[Any] = loop.create_future()
                link.send(hiredis.pack_command(command), ready)
                await asyncio.wait_for(ready, CONNECT_TIMEOUT)
            self._link = link
            return link
        finally:
            self._connecting = None
