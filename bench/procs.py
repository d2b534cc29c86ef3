"""Server processes for the benchmark: each in its own process group, output to a log file,
waited for until it listens, and stopped (SIGTERM, then SIGKILL of the whole group) whatever
happens, so that nothing outlives a run."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from devstack.launcher import stop_process_groups

STOP_TIMEOUT = 10.0


class ServerFailed(RuntimeError):
    """A benchmark server did not start, or died."""


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Group:
    """The processes one system needs; :meth:`stop` ends them all (also on any failure when used
    as a context manager)."""

    def __init__(self, log_dir: Path, *, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.log_dir = log_dir
        # The devstack launcher needs time to stop its own children before it may be killed.
        self.stop_timeout = stop_timeout
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            list(command),
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((name, process))
        return process

    def spawn_python(self, name: str, module: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.spawn(name, [sys.executable, "-m", module, *args], env={"PYTHONUNBUFFERED": "1", **(env or {})})

    def check(self) -> None:
        for name, process in self.processes:
            code = process.poll()
            if code is not None:
                raise ServerFailed(f"{name} exited with code {code}; see {self.log_dir / (name + '.log')}:\n"
                                   f"{self.tail(name)}")

    def tail(self, name: str, size: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        with contextlib.suppress(OSError):
            return path.read_bytes()[-size:].decode(errors="replace")
        return ""

    def wait_ports(self, ports: Sequence[int], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for port in ports:
            while not port_open(port):
                self.check()
                if time.monotonic() > deadline:
                    raise ServerFailed(f"port {port} was expected to accept connections within {timeout:g} s")
                time.sleep(0.05)

    def wait_log(self, name: str, text: str, count: int = 1, timeout: float = 90.0) -> None:
        """Until ``text`` appeared ``count`` times in ``name``'s output."""
        deadline = time.monotonic() + timeout
        while self.tail(name, 1_000_000).count(text) < count:
            self.check()
            if time.monotonic() > deadline:
                raise ServerFailed(f"{name} was expected to print {text!r} within {timeout:g} s:\n{self.tail(name)}")
            time.sleep(0.1)

    def pids(self) -> Iterator[int]:
        for _, process in self.processes:
            yield process.pid

    def stop(self) -> None:
        stop_process_groups([process for _, process in self.processes], self.stop_timeout)
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
