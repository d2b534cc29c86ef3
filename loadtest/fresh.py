"""A fresh gateway process for each handshake of ``--connections-only``.

Measuring the second handshake on the gateway that just closed the first batch's connections
reads memory the first batch freed and the allocator kept: 17.9 KiB per bare connection, then
0.9 KiB per deflate-offering one. So each handshake gets a gateway of its own, started for it:
a copy of a running gateway (same interpreter, same ``-m gateway`` command, same ``CHAT_*``
environment, read from the process) on a free port, stopped again after the measurement. It
talks to the same Redis and the same services, so it answers exactly as the original would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from chatkit.settings import env_name
from devstack.embedded import free_port
from devstack.launcher import healthz_ok
from loadtest.connections import Measurement, fetch_tokens, measure

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class CannotClone(RuntimeError):
    """The template process is not a ``python -m gateway`` whose environment can be read."""


@dataclass
class FreshGateway:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _template(pid: int) -> tuple[list[str], dict[str, str]]:
    try:
        process = psutil.Process(pid)
        cmdline, environ = process.cmdline(), process.environ()
    except psutil.Error as error:
        raise CannotClone(f"cannot read process {pid}: {error}") from error
    if "-m" not in cmdline or cmdline[cmdline.index("-m") + 1 : cmdline.index("-m") + 2] != ["gateway"]:
        raise CannotClone(f"process {pid} is not `python -m gateway`: {' '.join(cmdline)[:200]}")
    return cmdline, environ


def start_like(pid: int, name: str) -> FreshGateway:
    """Start a copy of gateway ``pid`` on a free port and wait until it answers ``/healthz``."""
    cmdline, environ = _template(pid)
    port = free_port()
    env = {**environ, env_name("port"): str(port), env_name("instance"): f"loadtest-fresh-{name}-{port}"}
    process = subprocess.Popen(
        cmdline, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    gateway = FreshGateway(process, f"ws://127.0.0.1:{port}/ws")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthz_ok(f"http://127.0.0.1:{port}/healthz"):
        if process.poll() is not None or time.monotonic() > deadline:
            gateway.stop()
            raise CannotClone(f"a copy of gateway {pid} on port {port} did not come up (exit {process.poll()})")
        time.sleep(0.1)
    return gateway


async def measure_each_on_fresh_gateway(
    urls: Sequence[str], template_pid: int, count: int, *, modes: Sequence[str], run: str, hold: float,
    say: Callable[[str], None] = lambda line: None,
) -> list[tuple[Measurement, int]]:
    """One :class:`Measurement` per mode, each on a new copy of gateway ``template_pid`` (stopped
    after it), with the pid it was taken on. Raises :class:`CannotClone` before measuring
    anything if the gateway cannot be copied."""
    _template(template_pid)
    tokens = await fetch_tokens(urls, run)
    results: list[tuple[Measurement, int]] = []
    for mode in modes:
        gateway = await asyncio.to_thread(start_like, template_pid, mode)
        say(f"{mode}: opening {count:,} connections to a fresh gateway (pid {gateway.pid}, copy of {template_pid})")
        try:
            results.append((await measure([gateway.url], tokens, count, mode, [gateway.pid], hold=hold), gateway.pid))
        finally:
            await asyncio.to_thread(gateway.stop)
    return results
