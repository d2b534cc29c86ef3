"""The embedded Valkey and PostgreSQL servers, run for real on free ports."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from devstack.embedded import EmbeddedServer, free_port, pg_bin_dir, start_postgres, start_valkey


def _psql(server: EmbeddedServer, sql: str) -> str:
    result = subprocess.run(
        [str(pg_bin_dir() / "psql"), server.url, "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, f"psql {sql!r}: expected exit 0, got {result.returncode}: {result.stderr}"
    return result.stdout.strip()


def _process_tree(server: EmbeddedServer) -> list[int]:
    root = psutil.Process(server.process.pid)
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


def _running(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.fixture
def started() -> Iterator[list[EmbeddedServer]]:
    """Started servers register here so a failing test still stops them."""
    started: list[EmbeddedServer] = []
    yield started
    for server in started:
        server.stop()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_valkey_answers_and_stop_leaves_no_process(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    valkey = start_valkey(tmp_path / "valkey", log_file=tmp_path / "valkey.log")
    started.append(valkey)
    assert valkey.url == f"redis://127.0.0.1:{valkey.port}/0"
    with redis.Redis.from_url(valkey.url) as client:
        assert client.ping() is True
    pids = _process_tree(valkey)

    valkey.stop()
    valkey.stop()  # idempotent

    assert not valkey.alive()
    assert _running(pids) == []
    assert (tmp_path / "valkey.log").read_text(), "expected valkey's output in its log file"


def test_valkey_appendonly_keeps_key_across_restart(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    first = start_valkey(tmp_path / "valkey")
    started.append(first)
    with redis.Redis.from_url(first.url) as client:
        client.set("chat:test", "kept")
    first.stop()

    second = start_valkey(tmp_path / "valkey", first.port)
    started.append(second)
    with redis.Redis.from_url(second.url) as client:
        assert client.get("chat:test") == b"kept"


def test_valkey_kill(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    valkey = start_valkey(tmp_path / "valkey", appendonly=False)
    started.append(valkey)
    pids = _process_tree(valkey)

    valkey.kill()

    assert not valkey.alive()
    assert valkey.process.returncode == -9
    assert _running(pids) == []


def test_valkey_on_busy_port_raises_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with code") as raised:
            start_valkey(tmp_path / "valkey", port, log_file=tmp_path / "valkey.log")
    assert str(tmp_path / "valkey.log") in str(raised.value)


@pytest.mark.slow
def test_postgres_query_restart_keeps_data(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    data = tmp_path / "postgres"
    first = start_postgres(data, log_file=tmp_path / "postgres.log")
    started.append(first)
    assert first.url == f"postgresql://postgres@127.0.0.1:{first.port}/postgres"
    assert _psql(first, "select 1") == "1"
    _psql(first, "create table kept (v text); insert into kept values ('before restart')")
    pids = _process_tree(first)

    first.stop()
    first.stop()

    assert _running(pids) == []
    second = start_postgres(data, first.port, log_file=tmp_path / "postgres.log")
    started.append(second)
    assert _psql(second, "select v from kept") == "before restart"


@pytest.mark.slow
def test_postgres_kill_then_restart_recovers(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    data = tmp_path / "postgres"
    first = start_postgres(data, log_file=tmp_path / "postgres.log")
    started.append(first)
    _psql(first, "create table kept (v int); insert into kept values (42)")
    pids = _process_tree(first)
    assert len(pids) > 1, "expected the postmaster to have forked its background processes"

    first.kill()

    assert _running(pids) == []
    assert (data / "postmaster.pid").exists(), "a crash is expected to leave the pid file behind"
    second = start_postgres(data, first.port, log_file=tmp_path / "postgres.log")
    started.append(second)
    assert _psql(second, "select v from kept") == "42"


def test_postgres_not_durable_settings(tmp_path: Path, started: list[EmbeddedServer]) -> None:
    postgres = start_postgres(tmp_path / "postgres", durable=False)
    started.append(postgres)
    assert _psql(postgres, "show fsync") == "off"
    assert _psql(postgres, "show max_connections") == "300"
