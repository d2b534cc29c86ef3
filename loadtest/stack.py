"""``python -m loadtest.stack [-- chat-loadtest args]``: ``make loadtest``.

Starts the backend with ``python -m devstack`` (``CHAT_GATEWAYS=2`` unless set otherwise; its
output goes to ``<data dir>/logs/loadtest-stack.log``), waits until every gateway answers
``/healthz``, runs ``chat-loadtest`` against all of them (unless ``--url`` is given) with
``--stack-pid`` (so that every server process is sampled and checked for leaks), and always
stops the stack again with SIGINT, whatever happened. Exits with ``chat-loadtest``'s code, or 1
when the stack did not come up. Ends by saying how to run the bigger shapes.

``python -m loadtest.stack --k6 [k6 run options]`` runs the k6 scenario (loadtest/k6/chat.js)
against the stack instead, with ``URLS`` set to its gateways: ``--k6 -e VUS=200 -e
SEND_SECONDS=60``. Exits with k6's code (99: a threshold failed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chatkit.settings import Settings, env_name
from devstack.launcher import client_host, gateway_ports, healthz_ok
from loadtest import cli

STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
_POLL_S = 0.2
_LOG_TAIL_BYTES = 3000
BIGGER_SHAPES = """\
bigger shapes (docs/PERFORMANCE.md, README "Load testing"):
  crowd:   python -m loadtest.stack -- --crowd 5000 --active 0.02 --stages 5
  soak:    python -m loadtest.stack -- --users 200 --rate 400 --duration 30m
  k6:      python -m loadtest.stack --k6 -e VUS=100 -e SEND_SECONDS=60
  memory:  python -m loadtest.stack -- --connections-only 10000
  compare: make bench"""


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError), path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
        return handle.read().decode(errors="replace")
    return ""


def _wait_healthy(process: subprocess.Popen[bytes], urls: Sequence[str]) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = list(urls)
    while pending and time.monotonic() < deadline and process.poll() is None:
        pending = [url for url in pending if not healthz_ok(url)]
        if pending:
            time.sleep(_POLL_S)
    return not pending


def _listening(host: str, port: int) -> bool:
    # Not a bind test: sockets of a stack just stopped linger in TIME_WAIT, which uvicorn
    # (SO_REUSEADDR) does not mind.
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # The launcher gave up on stopping its children in time; take its whole group down.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_k6(urls: Sequence[str], args: Sequence[str]) -> int:
    """The k6 scenario against ``urls``, with extra ``k6 run`` options; k6's exit code."""
    from loadtest.k6bin import SCRIPT, k6_path

    command = [str(k6_path()), "run", "-e", f"URLS={','.join(urls)}", *args, str(SCRIPT)]
    print(f"loadtest.stack: {' '.join(command)}", flush=True)
    return subprocess.run(command, check=False).returncode


def run(argv: Sequence[str]) -> int:
    k6 = argv[:1] == ["--k6"]
    argv = argv[1:] if k6 else argv
    args = list(argv[1:] if argv[:1] == ["--"] else argv)
    environ = dict(os.environ)
    environ.setdefault(env_name("gateways"), "2")
    # A data directory of its own: never the one a `make run` beside it holds (devstack/lock.py).
    environ.setdefault(env_name("data_dir"), str(Path(".chat") / "loadtest"))
    settings = Settings.from_env(environ)
    host, ports = client_host(settings.host), gateway_ports(settings)
    busy = [port for port in ports if _listening(host, port)]
    if busy:
        print(f"loadtest.stack: port {busy[0]} is in use (a `make run`?); stop it or set CHAT_PORT", file=sys.stderr)
        return 1
    log_path = settings.data_dir / "logs" / "loadtest-stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C reaches only us, and we stop the stack in order.
            start_new_session=True,
        )
    try:
        print(f"loadtest.stack: starting the stack with {len(ports)} gateway(s), log {log_path}", flush=True)
        if not _wait_healthy(process, [f"http://{host}:{port}/healthz" for port in ports]):
            print(f"loadtest.stack: the stack did not come up; end of {log_path}:\n{_tail(log_path)}", file=sys.stderr)
            return 1
        if k6:
            return run_k6([f"ws://{host}:{port}/ws" for port in ports], args)
        if not any(arg == "--url" or arg.startswith("--url=") for arg in args):
            args = [arg for port in ports for arg in ("--url", f"ws://{host}:{port}/ws")] + args
        if "--stack-pid" not in args:
            args += ["--stack-pid", str(process.pid)]
        return cli.run(args)
    finally:
        print("loadtest.stack: stopping the stack", flush=True)
        _stop(process)
        print(BIGGER_SHAPES, flush=True)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
