"""One launcher per data directory.

Two launchers on one ``CHAT_DATA_DIR`` would start two Valkeys on the same append-only files and
two PostgreSQLs on the same data directory: that is how data gets lost. The launcher holds an
exclusive ``flock`` on ``<data_dir>/launcher.lock`` for its whole life (the kernel drops it when
the process ends, even on ``kill -9``), and writes into the file who holds it and, once the stack
is up, its URLs, so that a second launcher can say whose stack is in the way."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "launcher.lock"


class DataDirBusy(RuntimeError):
    """Another launcher holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirBusy` naming the holder and the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "another launcher"
            os.close(fd)
            raise DataDirBusy(
                f"{self.path.parent} is in use by {holder}; stop that stack, or start this one with "
                f"another CHAT_DATA_DIR (and CHAT_PORT)"
            ) from None
        self._fd = fd
        self.describe(f"the stack of pid {os.getpid()} (starting)")

    def describe(self, holder: str) -> None:
        """Say in the lock file who holds it (read by a launcher that finds it taken)."""
        if self._fd is None:
            return
        data = holder.encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()
