"""Chaos: the stack as real processes under a steady stream of messages between user pairs
across two gateways, while processes are killed with SIGKILL, Valkey is restarted, PostgreSQL
is stopped and started, and pub/sub connections are killed. After each, every message a client
got `sent` for is in its dialog table exactly once, seqs run 1..n, and every client has every
message, none twice on one connection, live ones in order."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest
import redis.asyncio

from chatkit import keys
from chatkit.dialogs import DialogKey
from tests.chaos_client import Participant
from tests.support.processes import ProcessStack
from tests.support.stream_messages import message, publish

pytestmark = pytest.mark.timeout(150)

GATEWAYS = ("gateway-1", "gateway-2")


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ProcessStack]:
    stack = ProcessStack(tmp_path)
    stack.start_servers(claim_idle_ms=1000, max_deliveries=3, send_queue_limit=64)
    try:
        stack.start("auth_service", "auth_service")
        stack.start("chat_service-1", "chat_service")
        stack.start("chat_service-2", "chat_service")
        stack.start("storage_worker-1", "storage_worker")
        stack.start("storage_worker-2", "storage_worker")
        for name in GATEWAYS:
            stack.start_gateway(name)
        yield stack
    finally:
        stack.stop()


class Traffic:
    """Pairs of users, partners on different gateways, each sending steadily to the other."""

    def __init__(self, stack: ProcessStack, pairs: int = 3) -> None:
        self.stack = stack
        self.pairs: list[tuple[Participant, Participant, str]] = []
        self._pairs = pairs
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _urls(self, first: str) -> Callable[[], list[str]]:
        order = [first, *(g for g in GATEWAYS if g != first)]
        return lambda: [self.stack.url(g) for g in order if self.stack.alive(g)] or [self.stack.url(first)]

    async def start(self) -> None:
        for n in range(self._pairs):
            a = Participant(f"alice{n}", self._urls(GATEWAYS[0]))
            b = Participant(f"bob{n}", self._urls(GATEWAYS[1]))
            for p in (a, b):
                await p.register()
                await p.start()
            dialog_id = await a.open_dialog(b.name)
            self.pairs.append((a, b, dialog_id))
        for a, b, dialog_id in self.pairs:
            for p in (a, b):
                self._tasks.append(asyncio.create_task(self._talk(p, dialog_id)))

    async def _talk(self, participant: Participant, dialog_id: str) -> None:
        n = 0
        while not self._stop.is_set():
            await participant.send(dialog_id, f"{participant.name} #{n}")
            n += 1
            await asyncio.sleep(0.01)

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        for task in self._tasks:
            if task.done():
                task.result()  # surface a sender that gave up

    async def finish(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def participants(self) -> list[Participant]:
        return [p for a, b, _ in self.pairs for p in (a, b)]

    async def verify(self) -> None:
        settings = self.stack.settings
        db = await asyncpg.connect(settings.database_url)
        try:
            for a, b, dialog_id in self.pairs:
                acked = {**a.acked[dialog_id], **b.acked[dialog_id]}
                n = max(acked)
                assert sorted(acked) == list(range(1, n + 1)), f"{dialog_id}: acked seqs have gaps"
                rows = await _wait_stored(db, dialog_id, n)
                assert [r["seq"] for r in rows] == list(range(1, n + 1))
                assert {r["seq"]: str(r["id"]) for r in rows} == acked, f"{dialog_id}: stored ids differ"
                for p in (a, b):
                    await _until_synced(p, dialog_id, n)
                    _check_deliveries(p, dialog_id)
        finally:
            await db.close()
        rds = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            for _ in range(200):
                pending = await rds.xpending(keys.MESSAGES, keys.STORAGE_GROUP)
                if pending["pending"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert pending["pending"] == 0, "messages left unacknowledged by storage"
        finally:
            await rds.aclose()

    async def stop(self) -> None:
        for p in self.participants:
            await p.stop()


async def _until_ready(stack: ProcessStack) -> None:
    """Every gateway reports ready again within seconds."""
    for _ in range(100):
        if all(await asyncio.gather(*(asyncio.to_thread(stack.ready, g) for g in GATEWAYS))):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready again: {[g for g in GATEWAYS if not stack.ready(g)]}")


async def _wait_stored(db: asyncpg.Connection, dialog_id: str, n: int) -> list[asyncpg.Record]:
    table = f'"chat_{dialog_id}"'
    for _ in range(600):
        rows = await db.fetch(f"SELECT seq, id FROM {table} ORDER BY seq")
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{table}: {len(rows)} rows stored, expected {n}")


async def _until_synced(p: Participant, dialog_id: str, n: int) -> None:
    for _ in range(100):
        if p.have[dialog_id] >= set(range(1, n + 1)):
            break
        await p.sync()
        await asyncio.sleep(0.05)
    assert p.have[dialog_id] == set(range(1, n + 1)), f"{p.name} misses {set(range(1, n + 1)) - p.have[dialog_id]}"


def _check_deliveries(p: Participant, dialog_id: str) -> None:
    for index, delivered in enumerate(p.deliveries):
        twice = [seq for seq, count in Counter(delivered[dialog_id]).items() if count > 1]
        assert not twice, f"{p.name} connection {index}: {dialog_id} seqs delivered twice: {twice}"
    for index, pushed in enumerate(p.pushes):
        seqs = pushed[dialog_id]
        assert seqs == sorted(seqs), f"{p.name} connection {index}: live {dialog_id} out of order"


async def run_with_fault(stack: ProcessStack, fault: Callable[[], Awaitable[None]], *, after: float = 3.0) -> Traffic:
    traffic = Traffic(stack)
    await traffic.start()
    try:
        await traffic.run_for(1.5)
        await fault()
        await traffic.run_for(after)
        await traffic.finish()
        await traffic.verify()
    finally:
        await traffic.stop()
    return traffic


async def test_storage_worker_killed_mid_batch(chaos: ProcessStack) -> None:
    rds = redis.asyncio.Redis.from_url(chaos.settings.redis_url)
    try:
        # A poison entry among the traffic: a dialog whose table does not exist.
        poison = await publish(rds, message(DialogKey(900_001, 900_002), 1, 900_001))

        async def fault() -> None:
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
    async def fault() -> None:
        chaos.kill("chat_service-1")

    await run_with_fault(chaos, fault)


async def test_valkey_restarted(chaos: ProcessStack) -> None:
    async def fault() -> None:
        await asyncio.to_thread(chaos.restart_valkey)

    traffic = await run_with_fault(chaos, fault, after=5.0)
    assert sum(p.resyncs + p.connections - 1 for p in traffic.participants) > 0
    await _until_ready(chaos)


async def test_postgres_stopped_for_seconds(chaos: ProcessStack) -> None:
    async def fault() -> None:
        await asyncio.to_thread(chaos.stop_postgres)
        await asyncio.sleep(3)  # messages keep flowing live meanwhile
        await asyncio.to_thread(chaos.start_postgres_again)

    await run_with_fault(chaos, fault)


async def test_gateway_killed_clients_move_to_the_other(chaos: ProcessStack) -> None:
    async def fault() -> None:
        chaos.kill("gateway-1")

    traffic = await run_with_fault(chaos, fault)
    assert all(p.connections >= 2 for p, _, _ in traffic.pairs), "gateway-1's clients did not reconnect"


async def test_pubsub_connections_killed(chaos: ProcessStack) -> None:
    async def fault() -> None:
        rds = redis.asyncio.Redis.from_url(chaos.settings.redis_url)
        try:
            killed = await rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        finally:
            await rds.aclose()
        assert int(killed) >= len(GATEWAYS)

    traffic = await run_with_fault(chaos, fault)
    assert all(p.resyncs >= 1 for p in traffic.participants), "a client was not told to resync"
    await _until_ready(chaos)


async def test_a_client_that_never_reads_is_cut_off_without_hurting_others(chaos: ProcessStack) -> None:
    import socket

    traffic = Traffic(chaos, pairs=2)
    await traffic.start()
    try:
        victim_peer, victim, dialog_id = traffic.pairs[0]
        # A raw socket with a tiny receive buffer that completes the handshake and then never
        # reads: the gateway's writes back up into its bounded queue.
        port = chaos.gateway_ports["gateway-2"]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(_handshake(port))
        await asyncio.sleep(0.2)
        sock.sendall(_masked_text(f'{{"type":"auth","token":"{victim.token}"}}'))
        # More than the kernel's socket buffers (up to 4 MiB here) plus the gateway's queue.
        big = "x" * 4000
        for _ in range(75):
            await asyncio.gather(*(victim_peer.send(dialog_id, big) for _ in range(20)))
        await traffic.run_for(0.5)
        await traffic.finish()
        await traffic.verify()
        try:
            closed = await _peer_closed(sock)
        finally:
            sock.close()
        assert closed, "the gateway kept a client that never reads"
    finally:
        await traffic.stop()


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


async def _peer_closed(sock: object) -> bool:
    import socket

    assert isinstance(sock, socket.socket)
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

