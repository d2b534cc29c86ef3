"""`CHAT_NGINX=1 make run`: the machine's nginx in front of the local gateways, from the same
infra/nginx.conf compose mounts (devstack/nginx.py renders it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from chat_client import ChatClient
from chatkit.settings import env_name
from devstack import nginx
from devstack.embedded import free_port, port_is_free
from tests.support.system_programs import require_program

PASSWORD = "correct horse battery"


def _rendered(tmp_path: Path, upstreams: list[str]) -> str:
    return nginx.render(nginx.TEMPLATE.read_text(), upstreams=upstreams, port=18080,
                        site_dir=tmp_path / "site", run_dir=tmp_path / "run")


def test_the_rendering_changes_only_what_differs_locally(tmp_path: Path) -> None:
    text = _rendered(tmp_path, ["127.0.0.1:9001", "127.0.0.1:9002"])
    assert "gateway:8000" not in text
    assert "server 127.0.0.1:9001 max_fails=3 fail_timeout=10s;" in text
    assert "server 127.0.0.1:9002 max_fails=3 fail_timeout=10s;" in text
    assert "listen 127.0.0.1:18080 default_server;" in text and "listen 80" not in text
    assert f"root {tmp_path / 'site'};" in text
    # Everything else is compose's config, line for line.
    template = nginx.TEMPLATE.read_text()
    for line in ("least_conn;", "proxy_read_timeout 1h;", "location = /ws {", "location = /healthz {"):
        assert line in template and line in text


def test_a_template_missing_a_replaced_line_fails_loudly(tmp_path: Path) -> None:
    broken = nginx.TEMPLATE.read_text().replace("server gateway:8000", "server gw:8000")
    with pytest.raises(nginx.TemplateChanged, match="expected the upstream line"):
        nginx.render(broken, upstreams=["127.0.0.1:1"], port=1, site_dir=tmp_path, run_dir=tmp_path)


def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    binary = require_program("nginx", "nginx", "checking the local nginx config")
    config = nginx.write_config(upstreams=["127.0.0.1:9001", "127.0.0.1:9002"], port=free_port(),
                                site_dir=tmp_path / "site", data_dir=tmp_path)
    result = subprocess.run([binary, "-t", "-p", str(config.parent), "-c", str(config)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"expected nginx -t to pass, got {result.returncode}: {result.stderr}"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), bytes(response.read())


def _ports(count: int) -> int:
    for _ in range(100):
        first = free_port()
        if all(port_is_free(first + offset) for offset in range(1, count)):
            return first
    raise AssertionError(f"expected {count} consecutive free ports, found none in 100 tries")


async def _line_starting(process: asyncio.subprocess.Process, prefix: str, seen: list[str]) -> str:
    assert process.stdout is not None
    while True:
        raw = await process.stdout.readline()
        if not raw:
            raise AssertionError(f"the launcher exited before printing {prefix!r}:\n" + "\n".join(seen[-60:]))
        line = raw.decode().rstrip("\n")
        seen.append(line)
        if line.startswith(prefix):
            return line


@pytest.mark.timeout(150)
async def test_two_clients_through_nginx_land_on_different_gateways_and_chat(tmp_path: Path) -> None:
    require_program("nginx", "nginx", "CHAT_NGINX=1")
    port, nginx_port = _ports(2), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}
    env |= {env_name("data_dir"): str(tmp_path / "data"), env_name("port"): str(port),
            env_name("gateways"): "2", env_name("nginx"): "1", env_name("nginx_port"): str(nginx_port)}
    launcher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devstack", env=env, cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    seen: list[str] = []
    clients: list[ChatClient] = []
    try:
        line = await asyncio.wait_for(_line_starting(launcher, "nginx in front of the gateways: ", seen), 90)
        assert f"http://127.0.0.1:{nginx_port}/" in line
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{nginx_port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        url = f"ws://127.0.0.1:{nginx_port}/ws"
        alice = await ChatClient.connect(url)
        clients.append(alice)
        bob = await ChatClient.connect(url)
        clients.append(bob)
        # least_conn: the second connection goes to the gateway that has none.
        counts = []
        for gateway in (port, port + 1):
            _, ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{gateway}/readyz")
            counts.append(json.loads(ready)["connections"])
        assert counts == [1, 1], f"expected one connection on each gateway, got {counts}"
        await alice.register("alice_ngx", "alice@example.org", PASSWORD)
        await bob.register("bob_ngx", "bob@example.org", PASSWORD)
        await alice.login("alice_ngx", PASSWORD)
        await bob.login("bob_ngx", PASSWORD)
        opened = await alice.open_dialog("bob_ngx")
        dialog_id = opened["id"]
        await alice.send(dialog_id, "through nginx")
        push = await bob.next_push(timeout=15)
        assert push["type"] == "message" and push["message"]["text"] == "through nginx"
    finally:
        for client in clients:
            await client.close()
        if launcher.returncode is None:
            launcher.send_signal(2)
            try:
                await asyncio.wait_for(launcher.wait(), 30)
            except TimeoutError:
                launcher.kill()
                await launcher.wait()
    assert launcher.returncode == 0, "\n".join(seen[-60:])
