"""A TCP forwarder to put between a service and a real server, so a test can make the server
unreachable (stop the proxy: listener and live connections gone) and bring it back (start it
again on the same port) without touching the server other tests share."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        # Cleared by pause(): connections stay open but nothing crosses them, like a network
        # that silently stops delivering.
        self._flowing = asyncio.Event()
        self._flowing.set()
        # Set by refuse(): each new connection is closed at once and counted, like a server
        # that is down; a test waits on the count to know the client kept trying.
        self._refusing = False
        self.refused = 0
        # Every connection a client opened through the proxy, refused or not.
        self.accepted = 0

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def refuse(self) -> None:
        """Close every new connection as soon as it is accepted (and count it in ``refused``)."""
        self._refusing = True

    def admit(self) -> None:
        """Forward new connections again."""
        self._refusing = False

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, f"{url}: expected an explicit host and port"
        return cls(parts.hostname, parts.port)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{self.port}"))

    async def start(self) -> None:
        # Port 0 the first time; the same port again after a stop, so clients find it back.
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every forwarded connection, like a server that went away."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        if self._refusing:
            self.refused += 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
            self._handlers.discard(task)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, self._flowing), _pipe(up_reader, writer, self._flowing)
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                self._writers.discard(w)
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        # One side ended: end the other too, so its reader sees EOF.
        writer.close()
