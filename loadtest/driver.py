"""The interface between the load loop and one system under test.

The load loop (:mod:`loadtest.runner`) and the measurement (:mod:`loadtest.stats`) are the same
for every system; only a :class:`Driver` knows how to talk to one. Our own backend is driven by
:class:`loadtest.chat_driver.ChatDriver`; ``bench/`` implements the same protocol for other
systems (python-socketio, soketi, raw relays), so all of them see the same load shape and are
measured the same way.

The shape, which every driver must follow:

- ``users`` is even. User ``i`` talks to exactly one partner, :func:`partner_of` ``(i)``
  (``i ^ 1``: 0<->1, 2<->3, ...), and connects to ``urls[i % len(urls)]``
  (:func:`url_of`). With two or more URLs, partners therefore sit on different URLs, so every
  message crosses between servers.
- Every user sends to its partner and receives from it. A message is named by a *key*,
  ``"<sender>/<counter>"`` (:func:`message_key`), unique in a run; the driver puts the key in the
  payload and hands it back, unchanged, when the partner receives the message.
- The caller measures time: ack latency is how long :meth:`Driver.send` took; end-to-end latency
  runs from the start of ``send`` to the ``receive_time`` passed to ``on_message``. Times are
  :func:`time.monotonic` seconds.
- A driver reports every received copy, duplicates included: the caller counts lost and
  duplicated keys.

A minimal run::

    await driver.setup(users, urls)
    await driver.start_receiving(on_message)
    await driver.send(0, message_key(0, 1))   # ... many, concurrently (up to a window per sender)
    await driver.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

#: ``on_message(receiver index, message key, receive time (time.monotonic()))``. Called in the
#: event loop's thread; it must not block.
OnMessage = Callable[[int, str, float], None]


class SendError(Exception):
    """A send failed. ``code`` is what the stats group errors by: the server's error code
    (``"not_member"``, ``"unavailable"``...) or a driver-chosen name (``"timeout"``,
    ``"connection_closed"``)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class Driver(Protocol):
    """One system under test. Methods are called in this order: ``setup``, ``start_receiving``,
    any number of concurrent ``send`` calls, ``close`` (also after a failed ``setup``)."""

    #: Short name for reports, e.g. ``"chat"``, ``"socketio"``.
    name: str

    async def setup(self, users: int, urls: Sequence[str]) -> None:
        """Create (or reuse) and log in ``users`` users, user ``i`` on ``url_of(i, urls)``, and
        make each pair ``(i, partner_of(i))`` able to message each other. Raises on failure."""
        ...

    async def start_receiving(self, on_message: OnMessage) -> None:
        """From now on, call ``on_message`` for every message a user receives from its partner."""
        ...

    async def send(self, sender: int, key: str) -> None:
        """Send one message carrying ``key`` from ``sender`` to its partner; return once the
        server acknowledged it. Raises :class:`SendError` on a failure. Called concurrently, for
        the same sender too (a window of un-acked messages)."""
        ...

    async def close(self) -> None:
        """Close every connection. Must be safe to call after a partial ``setup``."""
        ...


def partner_of(user: int) -> int:
    """The one user ``user`` talks to."""
    return user ^ 1


def url_of(user: int, urls: Sequence[str]) -> str:
    """The URL user ``user`` connects to; consecutive users, hence partners, get different ones."""
    return urls[user % len(urls)]


def message_key(sender: int, counter: int) -> str:
    return f"{sender}/{counter}"


def key_sender(key: str) -> int:
    """The sender index inside a key made by :func:`message_key`; ``ValueError`` if malformed."""
    sender, _, counter = key.partition("/")
    if not counter:
        raise ValueError(f"not a message key: {key!r}")
    return int(sender)
