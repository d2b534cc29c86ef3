"""The stack as separate OS processes (`python -m <service>`), as in production, for tests
that kill them: each service in its own process group, output to a log file per process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from chatkit.settings import Settings
from devstack.embedded import EmbeddedServer, free_port, start_postgres, start_valkey


@dataclass
class ProcessStack:
    root: Path
    settings: Settings = field(default_factory=Settings)
    valkey: EmbeddedServer | None = None
    postgres: EmbeddedServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    gateway_ports: dict[str, int] = field(default_factory=dict)

    def start_servers(self, **overrides: object) -> None:
        self.valkey = start_valkey(self.root / "valkey", log_file=self.root / "logs" / "valkey.log")
        self.postgres = start_postgres(self.root / "pg", durable=False, log_file=self.root / "logs" / "pg.log")
        self.settings = Settings(
            redis_url=self.valkey.url, database_url=self.postgres.url,
            secret="chaos-test-secret-0123456789abcdef0123", log_level="INFO",
        ).with_overrides(**overrides)

    def restart_valkey(self) -> None:
        assert self.valkey is not None
        port = self.valkey.port
        self.valkey.stop()
        self.valkey = start_valkey(self.root / "valkey", port, log_file=self.root / "logs" / "valkey.log")

    def stop_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.stop()

    def start_postgres_again(self) -> None:
        assert self.postgres is not None
        self.postgres = start_postgres(
            self.root / "pg", self.postgres.port, durable=False, log_file=self.root / "logs" / "pg.log"
        )

    def start(self, name: str, package: str, **overrides: object) -> None:
        env = {**os.environ, **self.settings.with_overrides(instance=name, **overrides).to_env()}
        log = (self.root / "logs" / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", package], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env=env, start_new_session=True,
        )
        log.close()

    def start_gateway(self, name: str) -> str:
        port = self.gateway_ports.get(name) or free_port()
        self.gateway_ports[name] = port
        self.start(name, "gateway", port=port, host="127.0.0.1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.ready(name):
                return self.url(name)
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.processes[name].returncode}: {self.log(name)}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready in 30 s: {self.log(name)}")

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.gateway_ports[name]}/ws"

    def ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_ports[name]}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(10)

    def alive(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        processes = list(self.processes.values())
        self.processes.clear()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for server in (self.valkey, self.postgres):
            if server is not None:
                server.stop()
