"""The pipelined command link: one connection on which every command is written at the end of
the current loop turn together with whatever other tasks issued meanwhile (one write for many
commands), and replies are matched to their commands in order. No command waits for another's
reply before being sent, and commands run in the order they were issued. The idea of ioredis'
enableAutoPipelining. It is on every message's path: a command costs one pack and one append.

Replies are raw RESP values (see chatkit.redis.resp); error replies raise their
:class:`~chatkit.redis.errors.ReplyError` subclass. A lost connection fails the commands in
flight with :class:`~chatkit.redis.errors.ConnectionLost`; the next command connects again.
A blocking command (XREADGROUP BLOCK) holds up everything behind it: give it a link of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from chatkit.redis import resp
from chatkit.redis.address import RedisAddress
from chatkit.redis.errors import ConnectionLost, ExecAbort, NoScript, Unreachable
from chatkit.redis.resp import Command
from chatkit.redis.wire import Wire

CONNECT_TIMEOUT = 5.0


class Link:
    def __init__(self, address: RedisAddress) -> None:
        self.address = address
        self._wire: Wire | None = None
        self._connecting: asyncio.Task[Wire] | None = None
        # Set by close(): a closed link opens no connection again (a command after close fails).
        self._closed = False

    @property
    def backlog(self) -> int:
        """Commands sent whose replies have not come back yet."""
        return 0 if self._wire is None else len(self._wire.waiting)

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """Issue one command (``"PUBLISH", channel, data``); await the result. The command is
        queued at once, so callers that don't await still keep their order."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        packed = resp.pack(command)
        wire = self._wire
        if wire is not None and not wire.lost:
            wire.send(packed, future)
        else:
            self._send_when_connected(packed, [future])
        return future

    def transaction(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """``MULTI``, the commands, ``EXEC``, queued at once as one piece: on a link shared by
        many tasks, no other task's command can land inside. Resolves to EXEC's replies, one
        per command, where a command that failed while executing is its ReplyError (returned,
        not raised: the others ran). A command refused while queueing (wrong arguments) makes
        the server discard the whole transaction: that refusal is raised."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(len(commands) + 2)]
        packed = resp.pack_all((("MULTI",), *commands, ("EXEC",)))
        wire = self._wire
        if wire is not None and not wire.lost:
            wire.send_all(packed, futures)
        else:
            self._send_when_connected(packed, futures)
        outcome: asyncio.Future[list[Any]] = loop.create_future()
        futures[-1].add_done_callback(lambda _: _settle(outcome, futures))
        return outcome

    async def eval_script(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA, falling back to EVAL when the server lost its script cache (a restart,
        SCRIPT FLUSH); EVAL caches the script again for the next EVALSHA."""
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScript:
            return await self.call("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        """Close for good: the connection, and one being opened (waited for, so that no socket
        outlives the link); later commands fail with Unreachable."""
        self._closed = True
        await self.drop()

    async def drop(self) -> None:
        """Close the connection (one that stopped answering); the next command opens another."""
        connecting = self._connecting
        if connecting is not None:
            connecting.cancel()
            # Waited for, not awaited: its cancellation is not ours to raise or to swallow.
            await asyncio.wait([connecting])
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None:
            wire.flush()
            wire.transport.close()
            await asyncio.wait([wire.gone], timeout=CONNECT_TIMEOUT)

    def _send_when_connected(self, packed: bytes, futures: list[asyncio.Future[Any]]) -> None:
        if self._closed:
            _fail(futures, Unreachable(f"the link to Redis at {self.address} is closed"))
            return
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        connecting = self._connecting

        def sent(done: asyncio.Task[Wire]) -> None:
            error: Exception | None = None
            if done.cancelled():
                error = Unreachable(f"connecting to Redis at {self.address} was cancelled")
            elif (exc := done.exception()) is not None:
                error = Unreachable(f"Redis at {self.address} unreachable: {type(exc).__name__}: {exc}")
            if error is None:
                wire = done.result()
                if not wire.lost:
                    wire.send_all(packed, futures)
                    return
                # Lost between connecting and this callback: nothing would ever answer.
                error = ConnectionLost(f"Redis connection to {self.address} lost right after connecting")
            _fail(futures, error)

        connecting.add_done_callback(sent)

    async def _connect(self) -> Wire:
        try:
            loop = asyncio.get_running_loop()
            address = self.address
            if address.path is not None:
                opening = loop.create_unix_connection(lambda: Wire(address), address.path)
            else:
                opening = loop.create_connection(lambda: Wire(address), address.host, address.port)
            _, wire = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
            try:
                for command in address.setup_commands():
                    ready: asyncio.Future[Any] = loop.create_future()
                    wire.send(resp.pack(command), ready)
                    await asyncio.wait_for(ready, CONNECT_TIMEOUT)
            except BaseException:
                if wire.transport is not None:
                    wire.transport.close()
                raise
            if self._closed:  # closed while the connection was being set up
                if wire.transport is not None:
                    wire.transport.close()
                raise Unreachable(f"the link to Redis at {self.address} is closed")
            self._wire = wire
            return wire
        finally:
            self._connecting = None


def _fail(futures: list[asyncio.Future[Any]], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _settle(outcome: asyncio.Future[list[Any]], futures: list[asyncio.Future[Any]]) -> None:
    """EXEC's reply came (or the link failed): every earlier reply is in, since replies come in
    order. Each future's exception is looked at, so none is reported as never retrieved."""
    errors = [future.exception() for future in futures]
    if outcome.done():  # the caller stopped waiting
        return
    executed, refused = errors[-1], next((e for e in errors[1:-1] if e is not None), None)
    if executed is None:
        outcome.set_result(cast(list[Any], futures[-1].result()))
    elif isinstance(executed, ExecAbort) and refused is not None:
        # EXECABORT only says "previous errors": the command's own refusal says which.
        outcome.set_exception(refused)
    else:
        outcome.set_exception(errors[0] or executed)
