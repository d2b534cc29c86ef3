"""One launcher per data directory (devstack/lock.py): a second one refuses with one clear line
before it starts any server on the first one's files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatkit.settings import env_name
from devstack.lock import DataDirBusy, DataDirLock


def test_a_second_lock_on_the_same_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    try:
        first.describe("the stack of pid 4242 (ws://127.0.0.1:8000/ws)")
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock(tmp_path).acquire()
        message = str(refused.value)
        assert "in use by the stack of pid 4242 (ws://127.0.0.1:8000/ws)" in message
        assert "another CHAT_DATA_DIR" in message
        # Another directory is free.
        other = DataDirLock(tmp_path / "other")
        other.acquire()
        other.release()
    finally:
        first.release()
    again = DataDirLock(tmp_path)
    again.acquire()
    again.release()


@pytest.mark.timeout(60)
async def test_the_lock_goes_with_a_holder_killed_by_sigkill(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from devstack.lock import DataDirLock; "
        "DataDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(tmp_path), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"locked\n"
        with pytest.raises(DataDirBusy, match=f"pid {holder.pid}"):
            DataDirLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        lock = DataDirLock(tmp_path)
        lock.acquire()
        lock.release()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


@pytest.mark.timeout(60)
async def test_a_second_launcher_refuses_before_starting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    held = DataDirLock(data_dir)
    held.acquire()
    try:
        held.describe("the stack of pid 4242 (ws://127.0.0.1:8000/ws)")
        env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}
        env[env_name("data_dir")] = str(data_dir)
        launcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devstack", env=env, cwd=tmp_path,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(launcher.communicate(), 45)
        finally:
            if launcher.returncode is None:
                launcher.kill()
                await launcher.wait()
        text = out.decode()
        assert launcher.returncode == 1, text
        lines = [line for line in text.splitlines() if "in use by" in line]
        assert len(lines) == 1, text
        assert f"{data_dir} is in use by the stack of pid 4242 (ws://127.0.0.1:8000/ws)" in lines[0]
        assert "another CHAT_DATA_DIR" in lines[0]
        # Nothing was started on the holder's files.
        assert not (data_dir / "valkey").exists() and not (data_dir / "postgres").exists(), text
    finally:
        held.release()
