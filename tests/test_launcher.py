"""``python -m devstack`` end to end: embedded servers, every service, two gateways, clean stop."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from chatkit.settings import env_name
from devstack.embedded import port_is_free

READY_TIMEOUT = 45.0
EXIT_TIMEOUT = 20.0
READY_PREFIX = "chat backend ready: "


class RunningLauncher:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}
        env |= {env_name("data_dir"): str(data_dir), env_name("port"): str(port), env_name("gateways"): "2"}
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            env=env,
            cwd=data_dir.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def wait_ready(self, gateways: int) -> list[str]:
        ready: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT
        while len(ready) < gateways:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(
                    f"expected {gateways} ready lines within {READY_TIMEOUT:g} s, got:\n{self.output()}"
                )
            if line is None:
                pytest.fail(f"expected {gateways} ready lines, launcher exited first:\n{self.output()}")
            if line.startswith(READY_PREFIX):
                ready.append(line.removeprefix(READY_PREFIX))
        return ready

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def wait_exit(self) -> int:
        try:
            code = self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"expected the launcher to exit within {EXIT_TIMEOUT:g} s:\n{self.output()}")
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Safety net for failed tests: nothing may outlive the test."""
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _consecutive_free_ports(count: int) -> int:
    """``count`` free ports in a row, below the kernel's ephemeral range: a port in that range
    can be taken by any outgoing connection on the machine between this check and the bind."""
    low = _ephemeral_low()
    for _ in range(100):
        first = random.randrange(max(1024, low - 20000), low - count)
        if all(port_is_free(first + offset) for offset in range(count)):
            return first
    raise AssertionError(f"expected to find {count} consecutive free ports, found none in 100 tries")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def _still_running(processes: list[psutil.Process]) -> list[str]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {process.cmdline()}")
        except psutil.NoSuchProcess:
            pass
    return left


def _mentioning(path: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(path) in cmdline and process.pid != os.getpid():
            found.append(f"{process.pid} {cmdline}")
    return found


def _assert_nothing_left(launcher: RunningLauncher, children: list[psutil.Process]) -> None:
    assert _still_running(children) == [], f"expected every child stopped:\n{launcher.output()}"
    assert _mentioning(launcher.data_dir.parent) == []


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[RunningLauncher]:
    running = RunningLauncher(tmp_path / "data", _consecutive_free_ports(2))
    yield running
    running.close()


@pytest.mark.slow
def test_starts_everything_and_stops_on_sigint(launcher: RunningLauncher) -> None:
    ready = launcher.wait_ready(2)

    ports = [int(url.removeprefix("ws://127.0.0.1:").removesuffix("/ws")) for url in ready]
    assert ports[1] == ports[0] + 1, f"expected gateways on consecutive ports, got {ready}"
    for port in ports:
        assert _get_status(f"http://127.0.0.1:{port}/healthz") == 200
    children = launcher.descendants()
    assert (launcher.data_dir / "secret").stat().st_mode & 0o777 == 0o600

    launcher.process.send_signal(signal.SIGINT)

    assert launcher.wait_exit() == 0, launcher.output()
    _assert_nothing_left(launcher, children)


@pytest.mark.slow
def test_child_dying_stops_everything(launcher: RunningLauncher) -> None:
    launcher.wait_ready(2)
    children = launcher.descendants()
    victims = [child for child in children if child.cmdline()[-2:] == ["-m", "chat_service"]]
    assert len(victims) == 1, f"expected one chat_service child, got {[c.cmdline() for c in children]}"

    victims[0].send_signal(signal.SIGKILL)

    assert launcher.wait_exit() == 1, launcher.output()
    assert "launcher: chat_service exited with code -9" in launcher.output()
    _assert_nothing_left(launcher, children)
