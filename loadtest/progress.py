"""Live progress of a run on the terminal: a small ``rich`` table refreshed twice a second, or,
when the output is not a terminal (CI logs, ``make`` piped to a file), a plain line every few
seconds."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

REFRESH_S = 0.5
PLAIN_EVERY_S = 2.0


@dataclass(frozen=True)
class Snapshot:
    phase: str
    elapsed: float
    sent: int
    acked: int
    delivered: int
    errors: int
    p99_s: float


class _Rate:
    """Delivered messages per second between two consecutive snapshots."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def update(self, delivered: int) -> float:
        now = time.monotonic()
        last, self._last = self._last, (now, delivered)
        if last is None or now <= last[0]:
            return 0.0
        return (delivered - last[1]) / (now - last[0])


def _p99(snapshot: Snapshot) -> str:
    return "-" if math.isnan(snapshot.p99_s) else f"{snapshot.p99_s * 1000:.1f} ms"


def render(snapshot: Snapshot, rate: float) -> Table:
    table = Table(title=f"chat-loadtest: {snapshot.phase}, {snapshot.elapsed:.1f} s", title_justify="left")
    for column in ("sent", "acked", "delivered", "errors", "msgs/s", "p99 e2e"):
        table.add_column(column, justify="right")
    table.add_row(
        str(snapshot.sent), str(snapshot.acked), str(snapshot.delivered), str(snapshot.errors),
        f"{rate:,.0f}", _p99(snapshot),
    )  # fmt: skip
    return table


def plain(snapshot: Snapshot, rate: float) -> str:
    return (
        f"[{snapshot.elapsed:6.1f} s] {snapshot.phase}: sent {snapshot.sent} acked {snapshot.acked} "
        f"delivered {snapshot.delivered} errors {snapshot.errors} {rate:,.0f} msgs/s p99 {_p99(snapshot)}"
    )


async def show_progress(snapshot: Callable[[], Snapshot], console: Console) -> None:
    """Show ``snapshot()`` until cancelled; the last state stays on screen."""
    rate = _Rate()
    if not console.is_terminal:
        while True:
            current = snapshot()
            console.print(plain(current, rate.update(current.delivered)), highlight=False)
            await asyncio.sleep(PLAIN_EVERY_S)
    current = snapshot()
    with Live(render(current, rate.update(current.delivered)), console=console, auto_refresh=False) as live:
        try:
            while True:
                await asyncio.sleep(REFRESH_S)
                current = snapshot()
                live.update(render(current, rate.update(current.delivered)), refresh=True)
        finally:
            current = snapshot()
            live.update(render(current, rate.update(current.delivered)), refresh=True)
