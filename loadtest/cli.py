"""``chat-loadtest``: load-test the chat backend (closed or open loop, for a number of messages
or a duration, which also samples the servers and checks them for leaks), run a crowd of mostly
idle users (``--crowd``), or measure memory per idle connection (``--connections-only``).

Exit codes: 0 success; 1 a message was lost, duplicated or misrouted, a request failed, a service
kept growing after warm-up, the hard deadline passed, or setup failed; 2 bad arguments (a
non-loopback URL without --allow-remote).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from loadtest.chat_driver import ChatDriver
from loadtest.connections import MODES, Measurement, pids_listening_on, raise_fd_limit, run_connections, url_ports
from loadtest.crowd import CrowdConfig, run_crowd
from loadtest.fresh import CannotClone, measure_each_on_fresh_gateway
from loadtest.report import print_summary, write_results
from loadtest.runner import LoadConfig, SetupError, default_timeout, run_load
from loadtest.servers import Sampler, given_processes, stack_processes
from loadtest.urls import check_ws_url, require_loopback

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
DEFAULT_MESSAGES = 100


class UsageError(Exception):
    """Bad arguments: exit code 2."""


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """``"90"``, ``"90s"``, ``"30m"``, ``"1.5h"``, ``"500ms"`` as seconds."""
    value = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit) and value[: -len(unit)].strip():
            number, factor = value[: -len(unit)], _UNITS[unit]
            break
    else:
        number, factor = value, 1.0
    try:
        return float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 90, 90s, 30m or 1h, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chat-loadtest", description=__doc__.split("\n", 1)[0])
    p.add_argument("--url", action="append", default=[], help=f"gateway WebSocket URL, repeatable ({DEFAULT_URL})")
    p.add_argument("--users", type=int, default=20, help="users, even: they talk in pairs (20)")
    p.add_argument("--window", type=int, default=5, help="un-acked messages per user at most (5)")
    p.add_argument("--rate", type=float, help="total messages per second, spread over users (default: as fast as "
                   "the window allows)")  # fmt: skip
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--messages", type=int, help=f"messages each user sends ({DEFAULT_MESSAGES})")
    amount.add_argument("--duration", type=seconds, help="how long to send, instead of --messages: 90, 90s, 30m, "
                        "1h; a --duration run also samples the servers and checks them for leaks")  # fmt: skip
    p.add_argument("--timeout", type=seconds, help="hard deadline for the whole run (default: 600 s with --messages; "
                   "with --duration, the duration plus room for setup, the last acks and the drain)")  # fmt: skip
    p.add_argument("--drain", type=seconds, default=10.0, help="seconds to wait for the last deliveries (10)")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for JSON and HTML results")
    p.add_argument("--run", default="default", help="users are named lt-<run>-<i> and reused across runs")
    p.add_argument("--padding", type=int, default=0, help="extra characters per message text (0)")
    p.add_argument("--request-timeout", type=float, default=10.0, help="seconds to wait for one ack (10)")
    p.add_argument("--allow-remote", action="store_true", help="allow URLs that are not loopback")
    p.add_argument("--no-progress", action="store_true", help="no live progress")
    servers = p.add_argument_group("server sampling and leak check (on with --duration or a given pid)")
    servers.add_argument("--stack-pid", type=int, help="pid of the launcher (python -m devstack): sample all its "
                         "server processes (loadtest.stack passes it)")  # fmt: skip
    servers.add_argument("--server-pid", type=int, action="append", default=[], help="a server pid to "
                         "sample, repeatable (default: the launcher's, else the URLs' listeners)")  # fmt: skip
    servers.add_argument("--sample-every", type=seconds, help="seconds between samples (default: 5, less for runs "
                         "under 200 s: a fortieth of the duration, at least 0.2)")  # fmt: skip
    servers.add_argument("--warmup", type=seconds, help="samples before this are not judged for leaks (default: a "
                         "fifth of the duration, at most 5 min)")  # fmt: skip
    servers.add_argument("--no-leak-check", action="store_true", help="sample and chart, but never fail on growth")
    crowd = p.add_argument_group("crowd mode: many connected, few talking")
    crowd.add_argument("--crowd", type=int, metavar="N", help="N connected users in all, ramped in stages")
    crowd.add_argument("--active", type=float, default=0.02, help="fraction of them talking, in pairs (0.02)")
    crowd.add_argument("--talk-every", type=seconds, default=10.0, help="mean seconds between a talker's "
                       "messages (10)")  # fmt: skip
    crowd.add_argument("--stages", type=int, default=4, help="ramp stages (4)")
    crowd.add_argument("--stage-hold", type=seconds, default=20.0, help="seconds measured at each stage (20)")
    conns = p.add_argument_group("connections-only mode")
    conns.add_argument("--connections-only", type=int, metavar="M", help="open M idle connections, report "
                       "gateway memory per connection")  # fmt: skip
    conns.add_argument("--gateway-pid", type=int, action="append", default=[], help="gateway pid, repeatable "
                       "(default: whatever listens on the URLs' ports)")  # fmt: skip
    conns.add_argument("--hold", type=float, default=3.0, help="seconds to hold idle connections (3)")
    conns.add_argument("--compression", choices=["both", *MODES], default="both", help="which handshakes (both)")
    return p


def default_console() -> Console:
    console = Console()
    # Not a terminal (a pipe, a CI log): rich would assume 80 columns and fold the tables.
    return console if console.is_terminal else Console(width=140)


def run(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    console = console or default_console()
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    urls = tuple(args.url) or (DEFAULT_URL,)
    try:
        for url in urls:
            check_ws_url(url)
        require_loopback(urls, allow_remote=args.allow_remote)
        if args.connections_only is not None:
            return asyncio.run(_connections(args, urls, console))
        if args.crowd is not None:
            return asyncio.run(_crowd(args, urls, console))
        return asyncio.run(_load(args, urls, console))
    except (UsageError, ValueError) as error:
        console.print(f"chat-loadtest: error: {error}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


async def _load(args: argparse.Namespace, urls: tuple[str, ...], console: Console) -> int:
    config = LoadConfig(
        urls=urls,
        users=args.users,
        window=args.window,
        rate=args.rate,
        messages=DEFAULT_MESSAGES if args.messages is None and args.duration is None else args.messages,
        duration=args.duration,
        timeout=args.timeout if args.timeout is not None else default_timeout(
            users=args.users, duration=args.duration, drain=args.drain, request_timeout=args.request_timeout
        ),
        drain=args.drain,
        allow_remote=args.allow_remote,
    )
    config.validate()
    sampler = _sampler(args, urls)
    driver = ChatDriver(args.run, padding=args.padding, request_timeout=args.request_timeout)
    if sampler is not None:
        sampler.start()
    try:
        result = await run_load(driver, config, console=None if args.no_progress else console)
    except SetupError as error:
        console.print(f"chat-loadtest: {error}", highlight=False)
        return 1
    finally:
        if sampler is not None:
            await sampler.stop()
    data = result.to_json()
    leaks = False
    if sampler is not None:
        warmup = args.warmup if args.warmup is not None else min(300.0, (args.duration or 0.0) / 5)
        data["servers"] = sampler.to_json(result.stats.start, warmup)
        leaks = bool(data["servers"]["leaks"]) and not args.no_leak_check
        data["ok"] = data["ok"] and not leaks
    print_summary(data, console)
    json_path, html_path = write_results(data, args.out)
    console.print(f"results: {json_path} {html_path}", highlight=False)
    return 0 if result.ok() and not leaks else 1


async def _crowd(args: argparse.Namespace, urls: tuple[str, ...], console: Console) -> int:
    config = CrowdConfig(
        urls=urls, connected=args.crowd, active=args.active, talk_every=args.talk_every, stages=args.stages,
        stage_hold=args.stage_hold, drain=args.drain, run=args.run,
    )  # fmt: skip
    config.validate()
    raise_fd_limit()
    try:
        data = await run_crowd(config, _sampler(args, urls, always=True), None if args.no_progress else console)
    except SetupError as error:
        console.print(f"chat-loadtest: {error}", highlight=False)
        return 1
    print_summary(data, console)
    json_path, html_path = write_results(data, args.out)
    console.print(f"results: {json_path} {html_path}", highlight=False)
    return 0 if data["ok"] else 1


def _sampler(args: argparse.Namespace, urls: Sequence[str], *, always: bool = False) -> Sampler | None:
    """Server sampling for this run: on with --duration or when pids are given."""
    if not always and args.duration is None and args.stack_pid is None and not args.server_pid:
        return None
    if args.stack_pid is not None:
        if not psutil.pid_exists(args.stack_pid):
            raise UsageError(f"--stack-pid: no process {args.stack_pid}")
        processes = stack_processes(args.stack_pid)
    else:
        processes = given_processes(args.server_pid or pids_listening_on(url_ports(urls)))
    if not processes:
        return None
    interval = args.sample_every or min(5.0, max(0.2, (args.duration or 200.0) / 40))
    return Sampler(processes, interval)


def _gateway_pids(args: argparse.Namespace, urls: Sequence[str]) -> list[int]:
    if args.gateway_pid:
        missing = [pid for pid in args.gateway_pid if not psutil.pid_exists(pid)]
        if missing:
            raise UsageError(f"--gateway-pid: no process {missing[0]}")
        return list(args.gateway_pid)
    pids = pids_listening_on(url_ports(urls))
    if not pids:
        raise UsageError("found no process listening on the URLs' ports; pass --gateway-pid")
    return pids


async def _measure_connections(
    args: argparse.Namespace, urls: tuple[str, ...], pids: list[int], console: Console
) -> tuple[list[Measurement], list[list[int]]]:
    """The measurements, and the gateway pids each was taken on."""
    modes = list(MODES) if args.compression == "both" else [args.compression]
    if len(modes) > 1:
        # Each handshake on a gateway of its own: the second batch must not reuse the first's memory.
        try:
            fresh = await measure_each_on_fresh_gateway(
                urls, pids[0], args.connections_only, modes=modes, run=args.run, hold=args.hold,
                say=lambda line: console.print(line, highlight=False),
            )
            return [m for m, _ in fresh], [[pid] for _, pid in fresh]
        except CannotClone as error:
            console.print(f"note: {error}; both handshakes measured on the same gateway(s), so the second may "
                          "reuse memory the first freed (measure one --compression per fresh gateway)",
                          highlight=False)  # fmt: skip
    measurements = await run_connections(urls, args.connections_only, pids, modes=modes, run=args.run, hold=args.hold)
    return measurements, [pids] * len(measurements)


async def _connections(args: argparse.Namespace, urls: tuple[str, ...], console: Console) -> int:
    if args.connections_only < 1:
        raise UsageError("--connections-only must be at least 1")
    pids = _gateway_pids(args, urls)
    limit = raise_fd_limit()
    measurements, taken_on = await _measure_connections(args, urls, pids, console)
    table = Table(title=f"gateway memory per idle connection (fd limit {limit})")
    columns = ("handshake", "gateway pid", "opened", "failed", "RSS before", "RSS after", "KiB each", "extensions")
    for column in columns:
        table.add_column(column, justify="left" if column in ("handshake", "extensions") else "right")
    for m, on in zip(measurements, taken_on, strict=True):
        per = m.per_connection
        table.add_row(
            m.mode, ", ".join(map(str, on)), f"{m.opened:,}", f"{m.failed:,}", f"{m.rss_before / 2**20:.1f} MiB",
            f"{m.rss_after / 2**20:.1f} MiB", "-" if per is None else f"{per / 1024:.1f}", m.extensions or "(none)",
        )  # fmt: skip
    console.print(table)
    for m in measurements:
        for reason, n in m.failures.items():
            console.print(f"{m.mode}: {n} connection(s) failed: {reason}", highlight=False)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "connections.json"
    data = {
        "urls": list(urls),
        "gateway_pids": pids,
        "fresh_gateway_per_handshake": taken_on != [pids] * len(taken_on),
        "measurements": [{**m.to_json(), "gateway_pids": on} for m, on in zip(measurements, taken_on, strict=True)],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    console.print(f"results: {path}", highlight=False)
    return 0 if all(m.failed == 0 for m in measurements) else 1


def main() -> None:
    sys.exit(run())
