"""The loopback guard: the load tester is meant for a stack on this machine, so it refuses any
other target unless told otherwise (``--allow-remote``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


class RemoteURLError(ValueError):
    """A URL points somewhere other than this machine's loopback interface."""


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is ``localhost``, in 127.0.0.0/8, or ``::1``."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def require_loopback(urls: Iterable[str], *, allow_remote: bool = False) -> None:
    """Raise :class:`RemoteURLError` naming the first URL that is not loopback."""
    if allow_remote:
        return
    for url in urls:
        if not is_loopback(url):
            raise RemoteURLError(
                f"{url}: the host is not loopback (127.0.0.0/8, localhost, ::1); "
                "pass --allow-remote to load-test another machine"
            )


def check_ws_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is a ws:// or wss:// URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url}: expected a ws:// or wss:// URL with a host")
