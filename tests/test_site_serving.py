"""The web chat's files (infra/site) as served: by the gateway at `/` (CHAT_SITE_DIR), and by nginx
from the same directory with the compose config; plus what can be checked without a browser:
every module it imports is there, every test id the tests use is on the page, and no script
builds markup from strings (text is escaped by going in as textContent)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from chatkit.settings import DEFAULT_SITE_DIR, Settings
from devstack.embedded import free_port
from devstack.launcher import site_line
from tests.support.stack import Stack
from tests.support.system_programs import require_program

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "infra" / "site"
# The controls issue 13 names; tests/test_site_browser.py drives the page through them.
TEST_IDS = (
    "username", "email", "password", "register", "login", "logout", "peer-username", "open-dialog",
    "dialog-list", "dialog", "message-list", "message", "text", "send", "rename-username", "rename",
    "connection-state",
)
TYPES = {".html": "text/html", ".js": "javascript", ".css": "text/css"}


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


def _site_files() -> list[Path]:
    return sorted(path for path in SITE.iterdir() if path.suffix in TYPES)


async def _gateway(settings: Settings) -> AsyncIterator[str]:
    stack = Stack(settings)
    url = await stack.start_gateway("gateway-1")
    try:
        yield url.replace("ws://", "http://").removesuffix("/ws")
    finally:
        await stack.stop()


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[str]:
    async for base in _gateway(settings):
        yield base


def test_the_default_site_dir_is_the_checkouts_infra_site() -> None:
    assert DEFAULT_SITE_DIR == SITE and Settings().site_dir == SITE
    assert (SITE / "index.html").is_file()


async def test_the_gateway_serves_every_file_of_the_site(gateway: str) -> None:
    status, kind, body = await asyncio.to_thread(_get, gateway + "/")
    assert status == 200 and kind.startswith("text/html"), f"expected the page at /, got {status} {kind}"
    assert body == (SITE / "index.html").read_bytes()
    for path in _site_files():
        status, kind, body = await asyncio.to_thread(_get, f"{gateway}/{path.name}")
        assert status == 200, f"/{path.name}: expected 200, got {status}"
        assert TYPES[path.suffix] in kind, f"/{path.name}: expected a {TYPES[path.suffix]} type, got {kind!r}"
        assert body == path.read_bytes()


async def test_the_site_leaves_health_and_unknown_paths_alone(gateway: str) -> None:
    status, _, body = await asyncio.to_thread(_get, gateway + "/healthz")
    assert status == 200 and b'"ok"' in body
    status, _, _ = await asyncio.to_thread(_get, gateway + "/nowhere.js")
    assert status == 404
    status, _, _ = await asyncio.to_thread(_get, gateway + "/../pyproject.toml")
    assert status == 404


async def test_without_a_site_dir_the_gateway_serves_none(settings: Settings, tmp_path: Path) -> None:
    async for base in _gateway(settings.with_overrides(site_dir=tmp_path / "missing")):
        status, _, _ = await asyncio.to_thread(_get, base + "/")
        assert status == 404
        status, _, _ = await asyncio.to_thread(_get, base + "/healthz")
        assert status == 200


def test_the_launcher_prints_the_site_url(tmp_path: Path) -> None:
    assert site_line(Settings(port=8100, gateways=2)) == "web chat: open http://127.0.0.1:8100/"
    assert site_line(Settings(host="0.0.0.0", port=9000)) == "web chat: open http://127.0.0.1:9000/"
    missing = tmp_path / "nothing"
    assert site_line(Settings(site_dir=missing)) == f"no web chat: {missing} is not a directory (CHAT_SITE_DIR)"


def test_every_module_the_page_loads_is_there() -> None:
    html = (SITE / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="([\w.-]+\.(?:js|css))"', html))
    assert {"app.js", "style.css"} <= wanted, f"expected index.html to load app.js and style.css, got {wanted}"
    for script in SITE.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([\w.-]+\.js)"', script.read_text()))
    assert wanted == {path.name for path in _site_files() if path.suffix != ".html"}, (
        f"expected every file to be loaded and every loaded file to exist, loaded {sorted(wanted)}"
    )


def test_every_control_carries_its_test_id() -> None:
    text = "\n".join(path.read_text() for path in _site_files())
    # index.html's attributes and view.js's {"data-testid": "…"}.
    found = set(re.findall(r'data-testid"?(?:=|:\s*)"([\w-]+)"', text))
    missing = set(TEST_IDS) - found
    assert not missing, f"expected data-testid values {sorted(missing)} in infra/site, found {sorted(found)}"


def test_no_script_builds_markup_from_strings() -> None:
    sinks = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment)\b")
    for script in SITE.glob("*.js"):
        used = sinks.findall(script.read_text())
        assert not used, f"{script.name}: expected text to go in as textContent, found {used}"


def test_compose_mounts_the_site_where_nginx_serves_from() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./infra/site:/usr/share/nginx/html:ro" in compose["services"]["nginx"]["volumes"]
    assert "root /usr/share/nginx/html;" in (ROOT / "infra" / "nginx.conf").read_text()


def test_nginx_serves_the_same_files(tmp_path: Path) -> None:
    nginx = require_program("nginx", "nginx", "serving the site with infra/nginx.conf")
    port = free_port()
    text = (ROOT / "infra" / "nginx.conf").read_text()
    # As in compose, with the volume's path and the log and pid files made local.
    text = text.replace("root /usr/share/nginx/html;", f"root {SITE};")
    text = re.sub(r"listen 80 default_server;\s*listen \[::\]:80 default_server;", f"listen 127.0.0.1:{port};", text)
    text = text.replace("server gateway:", "server 127.0.0.1:")
    text = text.replace("/var/log/nginx/", f"{tmp_path}/").replace("/var/run/nginx.pid", f"{tmp_path}/nginx.pid")
    assert f"root {SITE};" in text and f"listen 127.0.0.1:{port};" in text, "infra/nginx.conf changed shape"
    config = tmp_path / "nginx.conf"
    config.write_text("daemon off;\n" + text.replace("worker_processes auto;", "worker_processes 1;"))
    server = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        status, kind, body = _wait_for(f"http://127.0.0.1:{port}/", server)
        assert status == 200 and kind.startswith("text/html") and body == (SITE / "index.html").read_bytes()
        for path in _site_files():
            status, kind, body = _get(f"http://127.0.0.1:{port}/{path.name}")
            assert status == 200 and body == path.read_bytes(), f"/{path.name}: expected the file, got {status}"
            assert TYPES[path.suffix] in kind, f"/{path.name}: expected a {TYPES[path.suffix]} type, got {kind!r}"
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=10)
    assert server.returncode in (0, -15), f"nginx ended with {server.returncode}: {errors.decode(errors='replace')}"


def _wait_for(url: str, server: subprocess.Popen[bytes]) -> tuple[int, str, bytes]:
    for _ in range(200):
        if server.poll() is not None:
            errors = server.stderr.read().decode(errors="replace") if server.stderr else ""
            pytest.fail(f"nginx exited with {server.returncode}: {errors}")
        try:
            return _get(url)
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx did not answer {url} in 10 s")
