"""What the worker did: a DEBUG line per batch and an INFO summary at most every interval, so a
busy worker's log stays readable."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from chatkit import metrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counts:
    batches: int = 0
    entries: int = 0
    inserted: int = 0
    # Stored before: a redelivery, or the same message sent to the stream twice.
    duplicates: int = 0
    # Left pending for a retry.
    failed: int = 0
    dead: int = 0

    def add(self, other: Counts) -> None:
        self.batches += other.batches
        self.entries += other.entries
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.failed += other.failed
        self.dead += other.dead


class Stats:
    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._window = Counts()
        self._window_start = time.monotonic()

    def batch(self, counts: Counts, dialogs: int, seconds: float) -> None:
        self._window.add(counts)
        metrics.STORAGE_BATCH_ENTRIES.observe(counts.entries)
        metrics.STORAGE_ROWS.inc(counts.inserted)
        metrics.STORAGE_DUPLICATES.inc(counts.duplicates)
        metrics.STORAGE_FAILED.inc(counts.failed)
        log.debug(
            "batch: %d entries over %d dialogs in %.1fms: %d inserted, %d duplicates, %d failed, %d dead-lettered",
            counts.entries, dialogs, seconds * 1000, counts.inserted, counts.duplicates, counts.failed, counts.dead,
        )

    def maybe_log(self) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed < self.interval:
            return
        w = self._window
        if w.entries:
            log.info(
                "last %.0fs: %d entries in %d batches (%.0f/s): %d inserted, %d duplicates, %d failed, "
                "%d dead-lettered",
                elapsed, w.entries, w.batches, w.entries / elapsed, w.inserted, w.duplicates, w.failed, w.dead,
            )
        self._window = Counts()
        self._window_start = now
