"""The chaos tests' stack and traffic: the stack as real processes (two gateways, two
chat_service replicas, two storage workers), pairs of users talking steadily across the two
gateways, and the checks every fault must pass (see tests/test_chaos.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from chatkit import keys
from tests.support import layout
from tests.support.chaos_client import Participant
from tests.support.processes import ProcessStack

GATEWAYS = ("gateway-1", "gateway-2")


@contextlib.contextmanager
def chaos_stack(root: Path) -> Iterator[ProcessStack]:
    stack = ProcessStack(root)
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
        self.resume()

    def resume(self) -> None:
        self._stop.clear()
        for a, b, dialog_id in self.pairs:
            for p in (a, b):
                self._tasks.append(asyncio.create_task(self._talk(p, dialog_id)))

    async def pause(self) -> None:
        """Stop sending; returns once every send under way was acknowledged."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

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
        await self.pause()

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

    def check_acked(self, dialog_id: str) -> int:
        """The dialog's acknowledged seqs are 1..n, each given to one message; n."""
        acked = self.acked(dialog_id)
        n = len(acked)
        seqs = sorted(m["seq"] for m in acked)
        repeated = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
        assert not repeated, f"{dialog_id}: {n} acks, seqs given to more than one message: {repeated}"
        assert seqs == list(range(1, n + 1)), f"{dialog_id}: {n} acks, expected seqs 1..{n}, got gaps"
        return n

    async def until_stored(self) -> None:
        """Wait until every acknowledged message is in its table and none waits in Redis."""
        db = await asyncpg.connect(self.stack.settings.database_url)
        rds = redis.asyncio.Redis.from_url(self.stack.settings.redis_url)
        try:
            for _, _, dialog_id in self.pairs:
                await _wait_stored(db, dialog_id, self.check_acked(dialog_id))
                for _ in range(600):
                    if await rds.zcard(layout.pending(dialog_id)) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert await rds.zcard(layout.pending(dialog_id)) == 0, f"{dialog_id}: messages still pending"
        finally:
            await rds.aclose()
            await db.close()

    async def verify(self) -> None:
        settings = self.stack.settings
        db = await asyncpg.connect(settings.database_url)
        try:
            for a, b, dialog_id in self.pairs:
                acked = self.acked(dialog_id)
                n = self.check_acked(dialog_id)
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
                left = sum([(await rds.xpending(stream, keys.STORAGE_GROUP))["pending"] for stream in layout.MESSAGES])
                if left == 0:
                    break
                await asyncio.sleep(0.05)
            assert left == 0, "messages left unacknowledged by storage"
        finally:
            await rds.aclose()

    async def stop(self) -> None:
        for p in self.participants:
            await p.stop()


async def until_ready(stack: ProcessStack) -> None:
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
    await until(lambda: p.have[dialog_id] >= want, lambda: f"{p.name} to get {sorted(want - p.have[dialog_id])}")
    assert p.have[dialog_id] == want, f"{p.name} holds seqs never acknowledged: {sorted(p.have[dialog_id] - want)}"


async def until(done: Callable[[], bool], what: Callable[[], str], seconds: float = 30.0) -> None:
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


async def redis_client(stack: ProcessStack) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(stack.settings.redis_url)


def gateway_log(stack: ProcessStack, name: str) -> str:
    path = stack.root / "logs" / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""
