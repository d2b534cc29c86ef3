"""Each system under comparison: start its servers (in process groups, stopped whatever happens),
drive them with the shared load loop, return the summary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.load import Shape, run_load, summary
from bench.procs import Group
from devstack.embedded import EmbeddedServer, free_port, port_is_free, start_valkey
from loadtest.driver import Driver

#: The devstack launcher stops its children (up to 10 s) before it may be killed.
DEVSTACK_STOP_TIMEOUT = 30.0
DEVSTACK_READY_TIMEOUT = 180.0

Progress = Callable[[str], None]


def consecutive_free_ports(count: int) -> int:
    """A port p with p .. p+count-1 all free right now."""
    for _ in range(100):
        base = free_port()
        if base + count < 65536 and all(port_is_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"found no {count} consecutive free ports")


class Valkey:
    """A fresh embedded Valkey (no AOF: a message bus here, not a store) for one system."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: EmbeddedServer | None = None

    def __enter__(self) -> EmbeddedServer:
        self.server = start_valkey(self.root / "valkey", appendonly=False, log_file=self.root / "valkey.log")
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()


async def _drive(driver: Driver, urls: list[str], shape: Shape, progress: Progress) -> dict[str, Any]:
    progress(f"  driving {driver.name}: {shape.describe()} against {', '.join(urls)}")
    result = await run_load(driver, urls, shape, console=Console(stderr=True))
    out = summary(result)
    progress(f"  {driver.name}: {out['delivered']:,} delivered, {out['delivered_per_s']:,} msgs/s, "
             f"lost {out['lost']}, errors {sum(out['errors'].values())}")
    return out


async def _bench_two_over_valkey(
    root: Path, shape: Shape, progress: Progress, module: str, name: str, make_driver: Callable[[], Driver]
) -> dict[str, Any]:
    """Two ``python -m <module> --port <port> --redis <url>`` servers (``<name>-1``, ``<name>-2``)
    on one fresh Valkey, driven by ``make_driver()`` as one system."""
    with Valkey(root) as valkey, Group(root / "logs") as group:
        ports = [consecutive_free_ports(1) for _ in range(2)]
        for index, port in enumerate(ports, start=1):
            group.spawn_python(f"{name}-{index}", module, "--port", str(port), "--redis", valkey.url)
        await asyncio.to_thread(group.wait_ports, ports)
        urls = [f"ws://127.0.0.1:{port}" for port in ports]
        result = await _drive(make_driver(), urls, shape, progress)
        group.check()
        return result


def start_devstack(group: Group, root: Path, gateways: int, name: str = "devstack") -> list[int]:
    """``python -m devstack`` with its own data dir and free ports; returns the gateway ports."""
    port = consecutive_free_ports(gateways)
    group.spawn_python(name, "devstack", env={
        "CHAT_GATEWAYS": str(gateways),
        "CHAT_DATA_DIR": str(root / "data"),
        "CHAT_PORT": str(port),
        "CHAT_HOST": "127.0.0.1",
        "CHAT_LOG_LEVEL": "WARNING",
        # The memory bench holds 10,000 connections of 4 users (loadtest/connections.py), and
        # every bench user logs in from this one address (SECURITY.md, limits).
        "CHAT_CONNECTIONS_PER_USER": "100000",
        "CHAT_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "1000000",
        # The user's own servers, if set, must not be used: the launcher starts embedded ones.
        "CHAT_REDIS_URL": "",
        "CHAT_DATABASE_URL": "",
    })
    group.wait_log(name, "chat backend ready", count=gateways, timeout=DEVSTACK_READY_TIMEOUT)
    return [port + offset for offset in range(gateways)]


async def bench_chat(root: Path, shape: Shape, progress: Progress) -> dict[str, Any]:
    from loadtest.chat_driver import ChatDriver

    with Group(root / "logs", stop_timeout=DEVSTACK_STOP_TIMEOUT) as group:
        progress("  starting python -m devstack (CHAT_GATEWAYS=2, embedded Valkey and PostgreSQL)")
        ports = await asyncio.to_thread(start_devstack, group, root, 2)
        urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
        result = await _drive(ChatDriver(run=uuid.uuid4().hex[:8]), urls, shape, progress)
        group.check()
        return result


async def bench_socketio(root: Path, shape: Shape, progress: Progress) -> dict[str, Any]:
    from bench.sio_driver import SocketioDriver

    return await _bench_two_over_valkey(root, shape, progress, "bench.sio_server", "socketio", SocketioDriver)


async def bench_soketi(root: Path, shape: Shape, progress: Progress) -> dict[str, Any]:
    from bench.soketi import SoketiDriver, start_servers

    with Valkey(root) as valkey, Group(root / "logs") as group:
        ports = [consecutive_free_ports(1) for _ in range(2)]
        await asyncio.to_thread(start_servers, group, ports, valkey.port)
        urls = [f"ws://127.0.0.1:{port}" for port in ports]
        result = await _drive(SoketiDriver(), urls, shape, progress)
        group.check()
        result["no_ack"] = True
        return result


async def bench_relay(root: Path, shape: Shape, progress: Progress) -> dict[str, Any]:
    from bench.relay_driver import RelayDriver

    with Group(root / "logs") as group:
        port = consecutive_free_ports(1)
        group.spawn_python("relay", "bench.relay_server", "--port", str(port))
        await asyncio.to_thread(group.wait_ports, [port])
        url = f"ws://127.0.0.1:{port}"
        result = await _drive(RelayDriver("relay"), [url, url], shape, progress)
        group.check()
        return result


async def bench_relay_redis(root: Path, shape: Shape, progress: Progress) -> dict[str, Any]:
    from bench.relay_driver import RelayDriver

    return await _bench_two_over_valkey(
        root, shape, progress, "bench.relay_server", "relay", lambda: RelayDriver("relay-redis")
    )
