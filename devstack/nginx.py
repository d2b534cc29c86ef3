"""nginx in front of the local gateways (``CHAT_NGINX=1 make run``), from the same file compose
mounts: infra/nginx.conf is the template, and compose uses it as it stands (upstream
``gateway:8000``, port 80, the site in /usr/share/nginx/html). :func:`render` changes only the
lines that differ on one machine without Docker, each found by what it says, and fails loudly
when one is missing, so the two cannot drift apart unnoticed:

- the upstream ``server gateway:8000 ...;`` line becomes one line per local gateway;
- ``listen 80`` becomes the local port on the loopback address;
- the site's ``root`` becomes CHAT_SITE_DIR;
- ``pid``, the logs and nginx's temporary files go under ``<data_dir>/nginx``, so no root is needed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "nginx.conf"

_UPSTREAM = re.compile(r"^(?P<indent>\s*)server gateway:8000(?P<options>[^;]*);.*$", re.M)
_LISTEN = re.compile(r"^(?P<indent>\s*)listen (?:\[::\]:)?80 default_server;\n", re.M)
_ROOT = re.compile(r"^(?P<indent>\s*)root /usr/share/nginx/html;$", re.M)
_PID = re.compile(r"^pid [^;]+;$", re.M)
_ERROR_LOG = re.compile(r"^error_log [^ ;]+", re.M)
_ACCESS_LOG = re.compile(r"^(?P<indent>\s*)access_log [^;]+;$", re.M)
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class TemplateChanged(RuntimeError):
    """infra/nginx.conf no longer has a line the local rendering replaces."""


def render(template: str, *, upstreams: list[str], port: int, site_dir: Path, run_dir: Path) -> str:
    """The compose config for this machine: ``upstreams`` as ``host:port``, nginx on
    127.0.0.1:``port``, its files under ``run_dir``."""
    if not upstreams:
        raise ValueError("expected at least one gateway address, got none")
    text = template

    def upstream_lines(match: re.Match[str]) -> str:
        indent, options = match.group("indent"), match.group("options")
        return "\n".join(f"{indent}server {address}{options};" for address in upstreams)

    text = _replace(_UPSTREAM, upstream_lines, text, "the upstream line 'server gateway:8000 ...;'")
    listens = _LISTEN.findall(text)
    if not listens:
        raise TemplateChanged(f"{TEMPLATE}: expected a 'listen 80 default_server;' line, found none")
    text = _LISTEN.sub("", text, count=len(listens) - 1)
    text = _replace(_LISTEN, lambda m: f"{m.group('indent')}listen 127.0.0.1:{port} default_server;\n", text,
                    "'listen 80 default_server;'")
    text = _replace(_ROOT, lambda m: f"{m.group('indent')}root {site_dir};", text, "the site's 'root' line")
    text = _replace(_PID, lambda m: f"pid {run_dir / 'nginx.pid'};", text, "a 'pid' line")
    text = _replace(_ERROR_LOG, lambda m: f"error_log {run_dir / 'error.log'}", text, "an 'error_log' line")

    def access_and_temp(match: re.Match[str]) -> str:
        indent = match.group("indent")
        temp = [f"{indent}{name}_temp_path {run_dir / (name + '_temp')};" for name in _TEMP_PATHS]
        return "\n".join([f"{indent}access_log {run_dir / 'access.log'};", *temp])

    return _replace(_ACCESS_LOG, access_and_temp, text, "an 'access_log' line")


def _replace(pattern: re.Pattern[str], repl: object, text: str, what: str) -> str:
    new, count = pattern.subn(repl, text)  # type: ignore[call-overload]
    if count == 0:
        raise TemplateChanged(f"{TEMPLATE}: expected {what}, found none")
    assert isinstance(new, str)
    return new


def find_nginx() -> str:
    """The machine's nginx, or a RuntimeError saying how to get it."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise RuntimeError("CHAT_NGINX=1 needs nginx (Debian package nginx: apt-get install nginx)")
    return found


def write_config(*, upstreams: list[str], port: int, site_dir: Path, data_dir: Path) -> Path:
    """Render infra/nginx.conf for this machine into ``<data_dir>/nginx/nginx.conf``."""
    run_dir = (data_dir / "nginx").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "nginx.conf"
    config.write_text(render(TEMPLATE.read_text(), upstreams=upstreams, port=port,
                             site_dir=site_dir.resolve(), run_dir=run_dir))
    return config


def command(nginx: str, config: Path) -> list[str]:
    """nginx in the foreground on ``config`` (its prefix beside it)."""
    return [nginx, "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"]
