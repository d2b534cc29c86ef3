"""Chaos: the stack as real processes under a steady stream of messages between user pairs
across two gateways, while processes are killed with SIGKILL, Valkey is restarted, PostgreSQL
is stopped and started, and pub/sub connections are killed. After each, every message a client
got `sent` for is in its dialog table exactly once (as many rows as acknowledgements, each row
the acknowledged id), seqs run 1..n, every client has every message through its own syncs
(after reconnects and `resync`), none twice on one connection, live ones in order, and no
request was answered `internal` unless the fault allows it (tests/support/chaos_traffic.py)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from chatkit import keys
from chatkit.dialogs import DialogKey
from tests.support import layout
from tests.support.chaos_traffic import (
    GATEWAYS,
    Traffic,
    chaos_stack,
    gateway_log,
    redis_client,
    run_with_fault,
    until,
    until_ready,
)
from tests.support.processes import ProcessStack
from tests.support.stream_messages import message, publish

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ProcessStack]:
    with chaos_stack(tmp_path) as stack:
        yield stack


async def test_storage_worker_killed_mid_batch(chaos: ProcessStack) -> None:
    rds = await redis_client(chaos)
    try:
        # A poison entry among the traffic: a dialog whose table does not exist.
        poison = await publish(rds, message(DialogKey(900_001, 900_002), 1, 900_001))

        async def fault(traffic: Traffic) -> None:
            chaos.kill("storage_worker-1")
            await asyncio.sleep(1)
            chaos.start("storage_worker-3", "storage_worker")

        await run_with_fault(chaos, fault)
        dead: list[dict[bytes, bytes]] = []
        for _ in range(200):
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await rds.xrange(keys.DEAD_LETTERS))
            dead = [fields for _, fields in entries]
            if dead:
                break
            await asyncio.sleep(0.1)
        assert [fields[b"id"] for fields in dead] == [poison]
        assert b"does not exist" in dead[0][b"reason"]
    finally:
        await rds.aclose()


async def test_chat_service_replica_killed(chaos: ProcessStack) -> None:
    """A replica killed while it holds requests: the other claims them and answers them, and
    goes on acknowledging sends."""
    held: list[bytes] = []

    async def fault(traffic: Traffic) -> None:
        held.extend(await _freeze_holding_requests(chaos, "chat_service-1"))
        chaos.kill("chat_service-1")
        acks = traffic.acks
        await until(lambda: traffic.acks >= acks + 20, lambda: "sends acknowledged after the kill")
        rds = await redis_client(chaos)
        try:
            still: set[bytes] = set(held)
            for _ in range(600):
                pending = [
                    entry for stream in layout.CHAT_REQUESTS
                    for entry in await rds.xpending_range(stream, keys.CHAT_GROUP, "-", "+", 1000)
                ]
                still = {cast(bytes, entry["message_id"]) for entry in pending} & set(held)
                if not still:
                    break
                await asyncio.sleep(0.05)
            assert not still, f"requests the killed replica held were never answered: {sorted(still)}"
        finally:
            await rds.aclose()

    await run_with_fault(chaos, fault)
    assert held, "the killed replica held no request"


async def _freeze_holding_requests(stack: ProcessStack, name: str) -> list[bytes]:
    """Stop ``name`` (SIGSTOP) at a moment it holds requests it has read and not answered;
    the ids of those requests. The caller kills it."""
    group = os.getpgid(stack.processes[name].pid)
    rds = await redis_client(stack)
    try:
        for _ in range(1000):
            os.killpg(group, signal.SIGSTOP)
            pending = [
                entry for stream in layout.CHAT_REQUESTS
                for entry in await rds.xpending_range(stream, keys.CHAT_GROUP, "-", "+", 1000, consumername=name)
            ]
            if pending:
                return [cast(bytes, entry["message_id"]) for entry in pending]
            os.killpg(group, signal.SIGCONT)
            await asyncio.sleep(0.01)
    finally:
        await rds.aclose()
    raise AssertionError(f"{name} never held a request")


async def test_valkey_restarted(chaos: ProcessStack) -> None:
    async def fault(traffic: Traffic) -> None:
        await asyncio.to_thread(chaos.restart_valkey)

    traffic = await run_with_fault(chaos, fault, after=5.0)
    # Every gateway's subscription dropped with Valkey: each client was told to resync, or
    # lost its connection and synced on reconnecting.
    missed = [p.name for p in traffic.participants if p.resyncs == 0 and p.connections == 1]
    assert not missed, f"neither told to resync nor reconnected: {missed}"
    await until_ready(chaos)


async def test_postgres_stopped_for_seconds(chaos: ProcessStack) -> None:
    live_during_outage: dict[str, int] = {}

    async def fault(traffic: Traffic) -> None:
        assert chaos.postgres is not None
        await asyncio.to_thread(chaos.stop_postgres)
        assert not chaos.postgres.alive()
        # Messages keep flowing live meanwhile: sends need no database, nor does fan-out.
        live = {p.name: p.live for p in traffic.participants}
        acks = traffic.acks

        def flowing() -> bool:
            return traffic.acks >= acks + 30 and all(p.live >= live[p.name] + 5 for p in traffic.participants)

        await until(flowing, lambda: "sends acknowledged and pushed live to everyone while PostgreSQL is down")
        assert not chaos.postgres.alive(), "PostgreSQL came back by itself"
        live_during_outage.update({p.name: p.live - live[p.name] for p in traffic.participants})
        await asyncio.to_thread(chaos.start_postgres_again)

    await run_with_fault(chaos, fault)
    assert all(n >= 5 for n in live_during_outage.values()), live_during_outage


async def test_gateway_killed_clients_move_to_the_other(chaos: ProcessStack) -> None:
    moved: dict[str, int] = {}
    killed_url = chaos.url("gateway-1")
    other_url = chaos.url("gateway-2")

    async def fault(traffic: Traffic) -> None:
        on_it = [p for p in traffic.participants if p.connected_to[-1] == killed_url]
        moved.update({p.name: p.connections for p in on_it})
        chaos.kill("gateway-1")

    traffic = await run_with_fault(chaos, fault)
    # Each pair's first user connects to gateway-1 first.
    assert len(moved) == len(traffic.pairs), f"expected one user per pair on gateway-1, got {sorted(moved)}"
    for p in traffic.participants:
        if p.name in moved:
            # verify() saw every one of them catch up by its own syncs.
            assert p.connections > moved[p.name], f"{p.name} did not reconnect"
            assert p.connected_to[moved[p.name]:] and set(p.connected_to[moved[p.name]:]) == {other_url}, (
                f"{p.name} reconnected to {p.connected_to[moved[p.name]:]}, expected only {other_url}"
            )
        else:
            assert p.connections == 1, f"{p.name} was on gateway-2 and still reconnected"


async def test_pubsub_connections_killed(chaos: ProcessStack) -> None:
    async def fault(traffic: Traffic) -> None:
        rds = await redis_client(chaos)
        try:
            killed = await rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        finally:
            await rds.aclose()
        assert int(killed) >= len(GATEWAYS)

    traffic = await run_with_fault(chaos, fault)
    assert all(p.resyncs >= 1 for p in traffic.participants), "a client was not told to resync"
    await until_ready(chaos)


async def test_a_client_that_never_reads_is_cut_off_without_hurting_others(chaos: ProcessStack) -> None:
    traffic = Traffic(chaos, pairs=2)
    await traffic.start()
    try:
        victim_peer, victim, dialog_id = traffic.pairs[0]
        # A raw socket with a tiny receive buffer that completes the handshake and then never
        # reads: the gateway's writes back up into its bounded queue.
        port = chaos.gateway_ports["gateway-2"]
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(_handshake(port))
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = await asyncio.to_thread(sock.recv, 1)
                assert chunk, f"connection closed during the handshake: {response!r}"
                response += chunk
            assert response.startswith(b"HTTP/1.1 101"), response
            sock.sendall(_masked_text(f'{{"type":"auth","token":"{victim.token}"}}'))
            # More than the kernel's socket buffers (up to 4 MiB here) plus the gateway's queue.
            big = "x" * 4000
            for _ in range(75):
                await asyncio.gather(*(victim_peer.send(dialog_id, big) for _ in range(20)))
            # Cut off as a slow consumer (close 4008, then the TCP connection aborted, since a
            # close frame cannot reach a peer that stopped reading), not by the 20 s ping
            # timeout: the gateway logs the slow-consumer close and then the abort of the same
            # connection, and only the slow-consumer close aborts. This is the only client
            # here that stops reading.
            await until(
                lambda: _slow_consumer_aborted(gateway_log(chaos, "gateway-2")),
                lambda: "a connection closed as a slow consumer, then aborted, in gateway-2's log",
            )
            assert await _peer_closed(sock), "the gateway kept a client that never reads"
        finally:
            sock.close()
        await traffic.run_for(0.5)
        await traffic.finish()
        await traffic.verify()
    finally:
        await traffic.stop()
    assert traffic.internal == [], traffic.internal


def _slow_consumer_aborted(log_text: str) -> bool:
    """A connection named in the slow-consumer line and then aborted by its grace timer."""
    slow = re.findall(r"connection (\S+) stopped reading; closing it", log_text)
    return any(f"aborted connection {conn_id}" in log_text for conn_id in slow)


def _handshake(port: int) -> bytes:
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 65536
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    short = len(payload) < 126
    length = bytes([0x80 | len(payload)]) if short else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return b"\x81" + length + mask + masked


async def _peer_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    # Drain whatever was buffered; a closed connection ends in EOF (or a reset).
    for _ in range(2000):
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        if not data:
            return True
    return False

