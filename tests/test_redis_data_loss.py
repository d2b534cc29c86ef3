"""Redis losing its data under traffic (docs/DELIVERY.md, `seq` numbering): the dialogs'
counters are gone, so the next send to each dialog finds no counter and chat_service restarts
it from the table's highest stored seq (FloorNeeded in chat_service/sequencer.py). Numbering
goes on without a gap or a repeat, and every acknowledged message is stored exactly once.

What the promise covers: messages already stored when the data goes. A message accepted but
not yet stored lives only in Redis (pending set, messages stream) and is lost with it, so the
test lets storage catch up before each loss (senders paused; the connections stay open), then
takes the data away for real (FLUSHALL; Valkey restarted without its append-only file), then
goes on sending."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import start_valkey
from tests.support import layout
from tests.support.chaos_traffic import Traffic, chaos_stack, redis_client, until_ready
from tests.support.processes import ProcessStack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ProcessStack]:
    with chaos_stack(tmp_path) as stack:
        yield stack


def restart_valkey_without_its_data(stack: ProcessStack) -> None:
    """Stop Valkey, delete its data directory (the append-only file with it), start it again
    on the same port: a Redis that came back empty."""
    assert stack.valkey is not None
    port = stack.valkey.port
    stack.valkey.stop()
    shutil.rmtree(stack.root / "valkey")
    stack.valkey = start_valkey(stack.root / "valkey", port, log_file=stack.root / "logs" / "valkey.log")


async def counters(stack: ProcessStack, traffic: Traffic) -> list[object]:
    rds = await redis_client(stack)
    try:
        return [await rds.get(layout.seq(dialog_id)) for _, _, dialog_id in traffic.pairs]
    finally:
        await rds.aclose()


async def lose_the_data(stack: ProcessStack, traffic: Traffic, how: str) -> None:
    await traffic.pause()
    await traffic.until_stored()
    assert None not in await counters(stack, traffic), "a dialog had no counter before the loss"
    if how == "flushall":
        rds = await redis_client(stack)
        try:
            await rds.flushall()
        finally:
            await rds.aclose()
    else:
        restart_valkey_without_its_data(stack)
    # Nothing sends while paused, so nothing can have made a counter again yet.
    assert await counters(stack, traffic) == [None] * len(traffic.pairs), "the counters survived"
    traffic.resume()


async def test_seq_goes_on_from_the_table_after_redis_loses_its_data(chaos: ProcessStack) -> None:
    traffic = Traffic(chaos)
    await traffic.start()
    try:
        await traffic.run_for(1.5)
        before_flush = traffic.acks
        await lose_the_data(chaos, traffic, "flushall")
        await traffic.run_for(2.0)
        before_restart = traffic.acks
        await lose_the_data(chaos, traffic, "restart without the file")
        await traffic.run_for(3.0)
        await traffic.finish()
        # Sends went on after each loss, so each dialog's counter was restarted (twice).
        assert before_flush < before_restart < traffic.acks, (before_flush, before_restart, traffic.acks)
        await traffic.verify()
        await until_ready(chaos)
    finally:
        await traffic.stop()
    assert traffic.internal == [], f"requests answered `internal` after the data loss: {traffic.internal}"
