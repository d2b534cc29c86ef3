"""What the Redis layer raises, in one tree, and the one mapping from a server's error reply to
a class::

    RedisError                   anything this package raises about Redis
    ├── ConnectionLost           (also a ConnectionError) the link went away: the commands in
    │   │                        flight failed and may or may not have run; the next command
    │   │                        connects again
    │   └── Unreachable          no link could be made: refused, timed out, AUTH or SELECT refused
    ├── ProtocolError            bytes that are not RESP: the link is closed
    └── ReplyError               the server answered a command with an error; ``code`` is the
        │                        reply's first word, the class is chosen by it:
        ├── WrongType            WRONGTYPE    a command on a key holding another type
        ├── NoScript             NOSCRIPT     EVALSHA of a script the server does not hold
        ├── NoGroup              NOGROUP      the stream or its consumer group does not exist
        ├── BusyGroup            BUSYGROUP    XGROUP CREATE of a group that exists already
        ├── ExecAbort            EXECABORT    a transaction refused whole (a command in it was)
        ├── AuthFailed           NOAUTH, WRONGPASS
        ├── Loading              LOADING      the server is loading its data: down for now
        ├── ReadOnly             READONLY     a write reached a replica
        ├── Moved                MOVED        Redis Cluster, reserved: the slot lives elsewhere
        ├── Ask                  ASK          Redis Cluster, reserved: the slot is migrating
        ├── TryAgain             TRYAGAIN     Redis Cluster, reserved
        └── ClusterDown          CLUSTERDOWN  Redis Cluster, reserved

:data:`REDIS_DOWN` is what "Redis is not there right now" means to a caller that backs off and
goes on: a lost or impossible link, a server still loading, or any OS-level socket error.

The reply mapping happens in :class:`ReplyError` itself, as :class:`OSError` picks its subclass
from an errno: ``ReplyError("NOGROUP No such key")`` is a :class:`NoGroup`. The RESP reader
(chatkit.redis.resp) builds every error reply through it, so an error nested in EXEC's reply is
typed as well as one answering a single command."""

from __future__ import annotations

from typing import Any


class RedisError(Exception):
    """Base of everything the Redis layer raises."""


class ConnectionLost(RedisError, ConnectionError):
    """The link went away; commands in flight failed and may or may not have run."""


class Unreachable(ConnectionLost):
    """No link could be made to the server."""


class ProtocolError(RedisError):
    """Bytes that are not RESP came from the server."""


class ReplyError(RedisError):
    """An error reply; constructing one gives the subclass its first word names."""

    def __new__(cls, message: str = "", *args: Any) -> ReplyError:
        if cls is ReplyError:
            cls = _BY_CODE.get(message.split(" ", 1)[0], ReplyError)
        return super().__new__(cls, message, *args)

    @property
    def code(self) -> str:
        """The reply's first word (WRONGTYPE, NOSCRIPT, ERR...)."""
        return str(self).split(" ", 1)[0]


class WrongType(ReplyError):
    pass


class NoScript(ReplyError):
    pass


class NoGroup(ReplyError):
    pass


class BusyGroup(ReplyError):
    pass


class ExecAbort(ReplyError):
    pass


class AuthFailed(ReplyError):
    pass


class Loading(ReplyError):
    pass


class ReadOnly(ReplyError):
    pass


class _Redirect(ReplyError):
    """``MOVED 3999 127.0.0.1:6381``: the slot and where it is served now."""

    @property
    def slot(self) -> int:
        return int(str(self).split(" ")[1])

    @property
    def address(self) -> str:
        return str(self).split(" ")[2]


class Moved(_Redirect):
    pass


class Ask(_Redirect):
    pass


class TryAgain(ReplyError):
    pass


class ClusterDown(ReplyError):
    pass


_BY_CODE: dict[str, type[ReplyError]] = {
    "WRONGTYPE": WrongType,
    "NOSCRIPT": NoScript,
    "NOGROUP": NoGroup,
    "BUSYGROUP": BusyGroup,
    "EXECABORT": ExecAbort,
    "NOAUTH": AuthFailed,
    "WRONGPASS": AuthFailed,
    "LOADING": Loading,
    "READONLY": ReadOnly,
    "MOVED": Moved,
    "ASK": Ask,
    "TRYAGAIN": TryAgain,
    "CLUSTERDOWN": ClusterDown,
}

# Redis unreachable right now (as opposed to a refused command): back off and retry.
# OSError covers the socket's own errors, TimeoutError included.
REDIS_DOWN: tuple[type[BaseException], ...] = (ConnectionLost, Loading, OSError)


def first_error(replies: list[object]) -> ReplyError | None:
    """The first command that failed inside a transaction, from EXEC's replies (where a
    failure is a value, not an exception: the other commands ran)."""
    return next((reply for reply in replies if isinstance(reply, ReplyError)), None)
