"""Chaos: the stack as real processes under a steady stream of messages between user pairs
across two gateways, while processes are killed with SIGKILL, Valkey is restarted, PostgreSQL
is stopped and started, and pub/sub connections are killed. After each, every message a client
got `sent` for is in its dialog table exactly once (as many rows as acknowledgements, each row
the acknowledged id), seqs run 1..n, every client has every message through its own syncs
(after reconnects and `resync`), none twice on one connection, live ones in order, and no
request was answered `internal` unless the fault allows it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
import redis.asyncio

from chatkit import keys
from chatkit.dialogs import DialogKey
from tests.chaos_client import Participant
from tests.messages import message, publish
from tests.processes import ProcessStack

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

    def acked(self, dialog_id: str) -> list[dict[str, Any]]:
        """Every acknowledged message of the dialog, from both sides, one per client_msg_id."""
        return [m for p in self.participants for m in p.acked[dialog_id].values()]

    @property
    def acks(self) -> int:
        return sum(len(acked) for p in self.participants for acked in p.acked.values())

    @property
    def internal(self) -> list[dict[str, Any]]:
        return [frame for p in self.participants for frame in p.internal]

    async def verify(self) -> None:
        settings = self.stack.settings
        db = await asyncpg.connect(settings.database_url)
        try:
            for a, b, dialog_id in self.pairs:
                acked = self.acked(dialog_id)
                n = len(acked)
                seqs = sorted(m["seq"] for m in acked)
                repeated = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
                assert not repeated, f"{dialog_id}: {n} acks, seqs given to more than one message: {repeated}"
                assert seqs == list(range(1, n + 1)), f"{dialog_id}: {n} acks, expected seqs 1..{n}, got gaps"
                rows = await _wait_stored(db, dialog_id, n)
                assert len(rows) == n, f"{dialog_id}: {n} messages acknowledged, {len(rows)} rows stored"
                assert [r["seq"] for r in rows] == list(range(1, n + 1))
                stored = {r["seq"]: str(r["id"]) for r in rows}
                assert stored == {m["seq"]: m["id"] for m in acked}, f"{dialog_id}: stored ids differ from acked"
                for p in (a, b):
                    await _until_caught_up(p, dialog_id, n)
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


async def _until_caught_up(p: Participant, dialog_id: str, n: int) -> None:
    """The participant gets every message by itself, as a client following docs/DELIVERY.md
    does (live, and by the syncs it sends after each connect and `resync`): the test does not
    sync for it."""
    want = set(range(1, n + 1))
    await _until(lambda: p.have[dialog_id] >= want, lambda: f"{p.name} to get {sorted(want - p.have[dialog_id])}")
    assert p.have[dialog_id] == want, f"{p.name} holds seqs never acknowledged: {sorted(p.have[dialog_id] - want)}"


async def _until(done: Callable[[], bool], what: Callable[[], str], seconds: float = 30.0) -> None:
    """Wait for a condition, failing with what was awaited after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not done():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what()}")
        await asyncio.sleep(0.05)


def _check_deliveries(p: Participant, dialog_id: str) -> None:
    for index, delivered in enumerate(p.deliveries):
        twice = [seq for seq, count in Counter(delivered[dialog_id]).items() if count > 1]
        assert not twice, f"{p.name} connection {index}: {dialog_id} seqs delivered twice: {twice}"
    for index, pushed in enumerate(p.pushes):
        seqs = pushed[dialog_id]
        assert seqs == sorted(seqs), f"{p.name} connection {index}: live {dialog_id} out of order"


Fault = Callable[[Traffic], Awaitable[None]]


async def run_with_fault(stack: ProcessStack, fault: Fault, *, after: float = 3.0) -> Traffic:
    """Traffic, the fault, more traffic, then the checks; no request may have been answered
    `internal` (a fault that allows some says so in its own test)."""
    traffic = Traffic(stack)
    await traffic.start()
    try:
        await traffic.run_for(1.5)
        await fault(traffic)
        await traffic.run_for(after)
        await traffic.finish()
        await traffic.verify()
    finally:
        await traffic.stop()
    assert traffic.internal == [], f"requests answered `internal` during the fault: {traffic.internal}"
    return traffic


async def _redis(stack: ProcessStack) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(stack.settings.redis_url)


def _gateway_log(stack: ProcessStack, name: str) -> str:
    path = stack.root / "logs" / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def test_storage_worker_killed_mid_batch(chaos: ProcessStack) -> None:
    rds = await _redis(chaos)
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
        await _until(lambda: traffic.acks >= acks + 20, lambda: "sends acknowledged after the kill")
        rds = await _redis(chaos)
        try:
            still: set[bytes] = set(held)
            for _ in range(600):
                pending = await rds.xpending_range(keys.CHAT_REQUESTS, keys.CHAT_GROUP, "-", "+", 1000)
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
    rds = await _redis(stack)
    try:
        for _ in range(1000):
            os.killpg(group, signal.SIGSTOP)
            pending = await rds.xpending_range(
                keys.CHAT_REQUESTS, keys.CHAT_GROUP, "-", "+", 1000, consumername=name
            )
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
    await _until_ready(chaos)


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

        await _until(flowing, lambda: "sends acknowledged and pushed live to everyone while PostgreSQL is down")
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
        rds = await _redis(chaos)
        try:
            killed = await rds.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        finally:
            await rds.aclose()
        assert int(killed) >= len(GATEWAYS)

    traffic = await run_with_fault(chaos, fault)
    assert all(p.resyncs >= 1 for p in traffic.participants), "a client was not told to resync"
    await _until_ready(chaos)


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
            address = sock.getsockname()
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
            # timeout: the abort is logged with this socket's address, and only the
            # slow-consumer close aborts.
            aborted = f"aborted the connection of {address}"
            await _until(
                lambda: aborted in _gateway_log(chaos, "gateway-2"),
                lambda: f"{aborted!r} in gateway-2's log",
            )
            assert "stopped reading; closing it" in _gateway_log(chaos, "gateway-2")
            assert await _peer_closed(sock), "the gateway kept a client that never reads"
        finally:
            sock.close()
        await traffic.run_for(0.5)
        await traffic.finish()
        await traffic.verify()
    finally:
        await traffic.stop()
    assert traffic.internal == [], traffic.internal


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

