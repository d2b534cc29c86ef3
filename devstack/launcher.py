"""``python -m devstack``: the whole backend on one machine, for ``make run``.

Starts embedded Valkey and PostgreSQL unless CHAT_REDIS_URL / CHAT_DATABASE_URL point elsewhere,
then one process of each service and CHAT_GATEWAYS gateways, with their output prefixed by
name. Ctrl-C stops everything; so does any child exiting on its own (exit code 1 then), because
a half-running backend is worse for development than none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Protocol, TextIO

from chatkit.settings import Settings, SettingsError, env_name
from devstack import nginx
from devstack.embedded import EmbeddedServer, free_port, port_is_free, start_postgres, start_valkey
from devstack.lock import DataDirLock

# Every package the launcher runs as `python -m <package>`; docker-compose.yml must run the same.
WORKERS: tuple[str, ...] = ("auth_service", "chat_service", "storage_worker")
GATEWAY = "gateway"
SERVICE_PACKAGES: tuple[str, ...] = (*WORKERS, GATEWAY)

HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Preferred ports for the embedded servers, so a local client can find them again between runs.
VALKEY_PORT = 6390
POSTGRES_PORT = 5440
_POLL_INTERVAL = 0.1


class _Finished(Exception):
    """Ends supervision with an exit code: a stop was requested, or something went wrong."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _StartServer(Protocol):
    """``start_valkey`` or ``start_postgres``."""

    def __call__(self, data_dir: Path, port: int | None = None, *, log_file: Path | None = None) -> EmbeddedServer: ...


@dataclasses.dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    reader: threading.Thread


class Output:
    """Serialises lines from several reader threads onto one stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def say(self, text: str) -> None:
        self.line(f"launcher: {text}")

    def copy(self, name: str, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            self.line(f"{name} | {raw.decode(errors='replace').rstrip()}")
        pipe.close()


class Launcher:
    def __init__(self, environ: Mapping[str, str], stream: TextIO) -> None:
        self._environ = dict(environ)
        self._out = Output(stream)
        self._stop_requested = threading.Event()
        self._servers: list[EmbeddedServer] = []
        self._children: list[Child] = []
        self._lock: DataDirLock | None = None
        # Each service's /healthz, /readyz and /metrics port (CHAT_METRICS_PORT), by child name.
        self.metrics_ports: dict[str, int] = {}

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested.set()

    def run(self) -> int:
        """Run until a signal or a child's exit; returns the process exit code."""
        try:
            self._run()
        except _Finished as finished:
            return finished.code
        except (SettingsError, RuntimeError, OSError) as exc:
            self._out.say(f"startup failed: {exc}")
            return 1
        finally:
            self.shutdown()
        return 0

    def _run(self) -> None:
        settings = Settings.from_env(self._environ)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Before anything is started there: a second stack on these files would corrupt them.
        self._lock = DataDirLock(settings.data_dir)
        self._lock.acquire()
        settings = self._with_secret(settings)
        settings = self._with_embedded_servers(settings)
        self._start_children(settings)
        for port in gateway_ports(settings):
            self._wait_healthy(f"http://{client_host(settings.host)}:{port}/healthz")
        metrics_host = client_host(settings.metrics_host)
        for name, port in self.metrics_ports.items():
            self._wait_healthy(f"http://{metrics_host}:{port}/readyz")
            self._out.say(f"{name} metrics: http://{metrics_host}:{port}/metrics (also /healthz, /readyz)")
        urls = [f"ws://{client_host(settings.host)}:{port}/ws" for port in gateway_ports(settings)]
        for url in urls:
            self._out.line(f"chat backend ready: {url}")
        if settings.nginx:
            urls.append(self._start_nginx(settings))
        self._lock.describe(f"the stack of pid {os.getpid()} ({', '.join(urls)})")
        self._out.line(site_line(settings))
        while True:
            self._check()
            time.sleep(_POLL_INTERVAL)

    def _check(self) -> None:
        if self._stop_requested.is_set():
            raise _Finished(0)
        for child in self._children:
            code = child.process.poll()
            if code is not None:
                self._out.say(f"{child.name} exited with code {describe_exit(code)}; stopping everything")
                raise _Finished(1)

    # --- preparation ----------------------------------------------------------------------

    def _with_secret(self, settings: Settings) -> Settings:
        if self._environ.get(env_name("secret")):
            return settings
        return settings.with_overrides(secret=load_or_create_secret(settings.data_dir / "secret"))

    def _with_embedded_servers(self, settings: Settings) -> Settings:
        settings = self._embedded_unless_set(settings, "redis_url", start_valkey, "valkey", VALKEY_PORT)
        self._check()
        settings = self._embedded_unless_set(settings, "database_url", start_postgres, "postgres", POSTGRES_PORT)
        self._check()
        return settings

    def _embedded_unless_set(
        self, settings: Settings, field: str, start: _StartServer, name: str, port: int
    ) -> Settings:
        """Unless ``field`` is set in the environment, ``start`` an embedded server in
        ``<data_dir>/<name>`` (log ``<data_dir>/logs/<name>.log``, preferably on ``port``) and
        point ``field`` at its URL."""
        if self._environ.get(env_name(field)):
            return settings
        logs = settings.data_dir / "logs"
        server = start(settings.data_dir / name, preferred_port(port), log_file=logs / f"{name}.log")
        self._started(server, logs)
        return settings.with_overrides(**{field: server.url})

    def _started(self, server: EmbeddedServer, logs: Path) -> None:
        self._servers.append(server)
        self._out.say(f"embedded {server.name} at {server.url} (log {logs / (server.name + '.log')})")

    # --- children -------------------------------------------------------------------------

    def _start_children(self, settings: Settings) -> None:
        base = {**self._environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        for package in WORKERS:
            self.metrics_ports[package] = free_port()
            self._spawn(package, package, {**base, env_name("metrics_port"): str(self.metrics_ports[package])})
        for index, port in enumerate(gateway_ports(settings), start=1):
            self._spawn(f"{GATEWAY}-{index}", GATEWAY, {**base, env_name("port"): str(port)})

    def _start_nginx(self, settings: Settings) -> str:
        """The machine's nginx in front of the gateways, from infra/nginx.conf (devstack/nginx.py)."""
        host = client_host(settings.host)
        port = preferred_port(settings.nginx_port)
        config = nginx.write_config(
            upstreams=[f"{host}:{gateway}" for gateway in gateway_ports(settings)], port=port,
            site_dir=settings.site_dir, data_dir=settings.data_dir,
        )
        self._spawn_command("nginx", nginx.command(nginx.find_nginx(), config), dict(self._environ))
        self._wait_healthy(f"http://127.0.0.1:{port}/healthz")
        self._out.line(f"nginx in front of the gateways: http://127.0.0.1:{port}/ (ws://127.0.0.1:{port}/ws)")
        return f"ws://127.0.0.1:{port}/ws"

    def _spawn(self, name: str, package: str, env: dict[str, str]) -> None:
        env = {**env, env_name("instance"): f"{socket.gethostname()}-{os.getpid()}-{name}"}
        self._spawn_command(name, [sys.executable, "-m", package], env)

    def _spawn_command(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: stopping a service also stops whatever it forked, and a
            # terminal Ctrl-C reaches only the launcher, which stops children in order.
            start_new_session=True,
        )
        assert process.stdout is not None
        reader = threading.Thread(
            target=self._out.copy, args=(name, process.stdout), name=f"output-{name}", daemon=True
        )
        reader.start()
        self._children.append(Child(name, process, reader))

    def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            self._check()
            if healthz_ok(url):
                return
            time.sleep(_POLL_INTERVAL)
        self._out.say(f"{url} was expected to answer 200 within {HEALTH_TIMEOUT:g} s, but did not")
        raise _Finished(1)

    # --- shutdown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop children first (they use the servers), then the embedded servers."""
        stop_process_groups([child.process for child in self._children], STOP_TIMEOUT)
        for child in self._children:
            child.reader.join(timeout=2)
        self._children.clear()
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._lock is not None:
            self._lock.release()


def stop_process_groups(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each process group, give them ``timeout`` seconds together, then SIGKILL."""
    for process in processes:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        # Also sweeps up anything a child forked into its group and left behind.
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def gateway_ports(settings: Settings) -> list[int]:
    return [settings.port + offset for offset in range(settings.gateways)]


def client_host(host: str) -> str:
    """Where to connect to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def site_line(settings: Settings) -> str:
    """What to open in a browser: the web chat on the first gateway (any gateway serves it)."""
    if not settings.site_dir.is_dir():
        return f"no web chat: {settings.site_dir} is not a directory (CHAT_SITE_DIR)"
    return f"web chat: open http://{client_host(settings.host)}:{gateway_ports(settings)[0]}/"


def preferred_port(port: int) -> int:
    return port if port_is_free(port) else free_port()


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


def load_or_create_secret(path: Path) -> str:
    """The token-signing secret kept in ``path``, so tokens stay valid across restarts."""
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            return secret
        path.unlink()
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthz_ok(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        error.close()
        return False
    except (OSError, http.client.HTTPException):
        return False


def main() -> None:
    launcher = Launcher(os.environ, sys.stdout)
    signal.signal(signal.SIGINT, launcher.request_stop)
    signal.signal(signal.SIGTERM, launcher.request_stop)
    sys.exit(launcher.run())
