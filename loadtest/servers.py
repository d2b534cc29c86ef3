"""The server processes of a stack, sampled over a run: resident memory, CPU and open file
descriptors every few seconds, then judged for leaks (:mod:`loadtest.trend`).

Which processes: every descendant of the launcher (``python -m devstack``, whose pid
``loadtest.stack`` passes as ``--stack-pid``), named after what it runs: ``gateway-1``,
``gateway-2`` (from the ``CHAT_INSTANCE`` the launcher gives each child, else the port),
``auth_service``, ``chat_service``, ``storage_worker``, ``valkey``, and ``postgres`` (the
postmaster and all its backends as one, since backends come and go); or given pids
(``--server-pid``); or, failing both, whatever listens on the gateway URLs' ports.

Valkey and PostgreSQL are sampled and charted but not judged: they hold data that grows with
every message by design (idempotency records kept 24 hours, the messages stream up to its trim,
stored rows and the buffers that cache them). The services are judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from loadtest.trend import DEFAULT_LIMITS, Limits, judge

SERVICE_NAMES = ("gateway", "auth_service", "chat_service", "storage_worker")
#: Sampled, never judged for leaks (see the module's docstring).
DATA_STORES = ("valkey", "postgres")


def _name(process: psutil.Process) -> str | None:
    """What a launcher descendant runs, or None for a process not worth its own line."""
    try:
        cmdline = process.cmdline()
        exe = process.name()
    except psutil.Error:
        return None
    if "-m" in cmdline:
        module = cmdline[cmdline.index("-m") + 1] if cmdline.index("-m") + 1 < len(cmdline) else ""
        if module == "gateway":
            with contextlib.suppress(psutil.Error):
                instance = process.environ().get("CHAT_INSTANCE", "")
                if "gateway-" in instance:
                    return instance[instance.rindex("gateway-"):]
            return f"gateway (pid {process.pid})"
        if module in SERVICE_NAMES:
            return module
    if "valkey" in exe or "redis-server" in exe:
        return "valkey"
    if exe in ("postgres", "postmaster"):
        return "postgres"
    return None


@dataclass
class Tracked:
    """One line of the report: a process, or the postmaster with its backends."""

    name: str
    pid: int
    group: bool = False  # sum over the process and its children (postgres)
    samples: list[dict[str, float]] = field(default_factory=list)
    #: RSS (bytes) at the latest :meth:`sample`, the first included.
    rss: float = 0.0
    _last_cpu: tuple[float, float] | None = None

    def _processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)] if self.group else [root]

    def sample(self, now: float) -> None:
        rss = fds = 0
        cpu = 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in self._processes():
                with contextlib.suppress(psutil.Error), process.oneshot():
                    rss += process.memory_info().rss
                    fds += process.num_fds()
                    times = process.cpu_times()
                    cpu += times.user + times.system
        self.rss = float(rss)
        last, self._last_cpu = self._last_cpu, (now, cpu)
        percent = 0.0 if last is None or now <= last[0] else max(0.0, (cpu - last[1]) / (now - last[0]) * 100.0)
        if last is not None:
            self.samples.append({"t": now, "rss_bytes": float(rss), "cpu_percent": round(percent, 2), "fds": fds})

    @property
    def cpu_seconds(self) -> float:
        return self._last_cpu[1] if self._last_cpu else 0.0


def stack_processes(launcher_pid: int) -> list[Tracked]:
    """The launcher's server descendants (postgres backends folded into the postmaster)."""
    tracked: list[Tracked] = []
    seen_postgres = False
    for process in psutil.Process(launcher_pid).children(recursive=True):
        name = _name(process)
        if name is None:
            continue
        if name == "postgres":
            if seen_postgres:
                continue  # a backend: counted with the postmaster
            seen_postgres = True
            with contextlib.suppress(psutil.Error):
                parent = process.parent()
                while parent is not None and _name(parent) == "postgres":
                    process, parent = parent, parent.parent()
            tracked.append(Tracked("postgres", process.pid, group=True))
            continue
        tracked.append(Tracked(name, process.pid))
    return sorted(tracked, key=lambda t: t.name)


def given_processes(pids: Iterable[int]) -> list[Tracked]:
    tracked = []
    for pid in pids:
        name = None
        with contextlib.suppress(psutil.Error):
            name = _name(psutil.Process(pid))
        tracked.append(Tracked(name or f"pid {pid}", pid))
    return tracked


def _trend(name: str, samples: list[dict[str, float]], warmup_s: float, limits: Limits) -> dict[str, Any]:
    trend = judge(samples, warmup_s, limits)
    if name in DATA_STORES:
        trend.update(verdict="not judged (data store)", reason="holds data that grows with the messages")
    return trend


class Sampler:
    """Samples ``processes`` every ``interval`` seconds until stopped; :meth:`to_json` gives the
    series (times from ``origin``) and each process's trend after ``warmup_s``."""

    def __init__(self, processes: Sequence[Tracked], interval: float) -> None:
        self.processes = list(processes)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        now = time.monotonic()
        for process in self.processes:
            process.sample(now)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    def totals(self) -> tuple[float, float]:
        """The latest RSS (bytes) summed over the processes, and their CPU seconds so far."""
        rss = sum(p.samples[-1]["rss_bytes"] for p in self.processes if p.samples)
        return rss, sum(p.cpu_seconds for p in self.processes)

    def to_json(
        self, origin: float, warmup_s: float, limits: Limits = DEFAULT_LIMITS, *, judged_why_not: str = ""
    ) -> dict[str, Any]:
        """The samples from ``origin`` on, and each process's trend; with ``judged_why_not``, no
        process is judged for leaks (a crowd's ramp grows them by design) and that is the note."""
        processes: list[dict[str, Any]] = []
        for process in self.processes:
            samples = [{**s, "t": round(s["t"] - origin, 3)} for s in process.samples if s["t"] >= origin]
            if not samples:
                continue
            cpu = [s["cpu_percent"] for s in samples]
            trend = _trend(process.name, samples, warmup_s, limits)
            if judged_why_not:
                trend.update(verdict="not judged", reason=judged_why_not)
            processes.append({
                "name": process.name, "pid": process.pid, "samples": samples,
                "cpu_mean_percent": round(sum(cpu) / len(cpu), 2), "trend": trend,
            })  # fmt: skip
        leaks = [p["name"] for p in processes if p["trend"]["verdict"] == "growing"]
        judged = [p for p in processes if p["trend"]["verdict"] in ("steady", "growing")]
        if judged_why_not:
            note = f"leak check: not done: {judged_why_not}"
        elif leaks:
            note = "leak check: " + "; ".join(f"{p['name']}: {p['trend']['reason']}" for p in processes
                                              if p["name"] in leaks)  # fmt: skip
        elif judged:
            note = (f"leak check: {len(judged)} server process(es) steady after a {warmup_s:.0f} s warm-up "
                    f"(growing means: RSS over {limits.rss_bytes_per_h / 2**20:g} MiB/h and "
                    f"{limits.rss_floor_bytes / 2**20:g} MiB in all, or open files over {limits.fds_per_h:g}/h and "
                    f"{limits.fds_floor:g} in all, Theil-Sen slope over the judged samples and their second half)")
        else:
            note = f"leak check: the run was too short to judge (fewer than {limits.min_samples} samples after warm-up)"
        return {"interval_s": self.interval, "warmup_s": warmup_s, "processes": processes, "leaks": leaks,
                "note": note}  # fmt: skip
