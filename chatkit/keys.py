"""Every Redis key, channel and stream name, in one place.

The data is cut into partitions (CHAT_PARTITIONS, chatkit/partitions.py), each with a hash tag
``{t}`` that places its keys on one Redis Cluster slot. Names that belong to a partition take
its tag; the tag of a dialog's partition is ``Partitions.dialog_tag(key)``, of a user's
``Partitions.user_tag(user_id)``. Everything accept.lua touches for one send (the dialog's keys,
its request stream and its messages stream) shares the dialog's tag: one slot.

Streams (work that must be done once, by one replica, and not lost), one per partition:
    chat:requests:auth:{t}   client requests for auth_service (by user)     group "auth_service"
    chat:requests:chat:{t}   client requests for chat_service (a send by     group "chat_service"
                             its dialog, everything else by user)
    chat:messages:{t}        accepted messages, for storage (by dialog)     group "storage_worker"
    chat:dead                entries that kept failing, with the reason (one stream)
    chat:presence_changes    a user came online or went offline  group "chat_service_presence"
                             (at most once: trimmed, acknowledged even when a fan-out fails)

Pub/sub channels (fan-out, at most once; `sync` closes gaps):
    chat:gateway:{gateway_id}   replies to requests that came through one gateway
    chat:user:{user_id}         events for every connection of one user, on any gateway

Keys (``{t}`` the dialog's partition tag):
    chat:dialog:{dialog_id}:{t}:seq      last seq given out in the dialog (INCR)
    chat:dialog:{dialog_id}:{t}:pending  messages sent but not yet stored, scored by seq
    chat:dialog:{dialog_id}:{t}:msgid:{sender_id}:{client_msg_id}
                                         '<seq>:<id>' of the message a client_msg_id made
    chat:limit:{name}:{subject}        a token bucket (hash: tokens, at), chatkit/ratelimit.py
    chat:user:{user_id}:revoked        ended sessions (hash: session id -> 1, "*" -> every session
                                       started at or before this ms ends), auth_service/sessions.py
    chat:typing:{dialog_id}:{user_id}  set while a typing event may not be forwarded (rate limit)

Presence (chatkit/presence.py; each gateway has a fresh id every start):
    chat:gateways                      ids of the gateways that may hold presence
    chat:gw:{gateway_id}:alive         the gateway's heartbeat, expiring after presence_ttl_seconds
    chat:gw:{gateway_id}:users         users with a logged-in connection on that gateway
    chat:presence:{user_id}            gateways where the user has a logged-in connection
"""

from __future__ import annotations

DEAD_LETTERS = "chat:dead"

PRESENCE_CHANGES = "chat:presence_changes"

AUTH_GROUP = "auth_service"
CHAT_GROUP = "chat_service"
STORAGE_GROUP = "storage_worker"
PRESENCE_GROUP = "chat_service_presence"


# The families of partitioned streams: each partition's stream is ``<family>:{tag}``. Metrics
# and logs that speak of a stream as a whole use the family name.
AUTH_REQUESTS_FAMILY = "chat:requests:auth"
CHAT_REQUESTS_FAMILY = "chat:requests:chat"
MESSAGES_FAMILY = "chat:messages"


def family(stream: str) -> str:
    """The family of a partition's stream (``chat:messages:{e4}`` -> ``chat:messages``); any
    other name as it is."""
    name, sep, tag = stream.rpartition(":")
    return name if sep and tag.startswith("{") and tag.endswith("}") else stream


def auth_requests(tag: str) -> str:
    return f"{AUTH_REQUESTS_FAMILY}:{tag}"


def chat_requests(tag: str) -> str:
    return f"{CHAT_REQUESTS_FAMILY}:{tag}"


def messages(tag: str) -> str:
    return f"{MESSAGES_FAMILY}:{tag}"


def gateway_channel(gateway_id: str) -> str:
    return f"chat:gateway:{gateway_id}"


def user_channel(user_id: int) -> str:
    return f"chat:user:{user_id}"


USER_CHANNEL_PREFIX = "chat:user:"


def dialog_seq(tag: str, dialog_id: str) -> str:
    return f"chat:dialog:{dialog_id}:{tag}:seq"


def dialog_pending(tag: str, dialog_id: str) -> str:
    return f"chat:dialog:{dialog_id}:{tag}:pending"


def client_msg_id(tag: str, dialog_id: str, sender_id: int, client_msg_id: str) -> str:
    return f"chat:dialog:{dialog_id}:{tag}:msgid:{sender_id}:{client_msg_id}"


def limit_bucket(name: str, subject: str | int) -> str:
    """A rate limit's token bucket: ``name`` says which limit, ``subject`` whose (a user id, a
    lowercased username, a client address)."""
    return f"chat:limit:{name}:{subject}"


def revoked_sessions(user_id: int) -> str:
    return f"chat:user:{user_id}:revoked"


def typing_gate(dialog_id: str, user_id: int) -> str:
    return f"chat:typing:{dialog_id}:{user_id}"


GATEWAYS = "chat:gateways"
GATEWAY_PREFIX = "chat:gw:"
PRESENCE_PREFIX = "chat:presence:"


def gateway_alive(gateway_id: str) -> str:
    return f"{GATEWAY_PREFIX}{gateway_id}:alive"


def gateway_users(gateway_id: str) -> str:
    return f"{GATEWAY_PREFIX}{gateway_id}:users"


def presence(user_id: int) -> str:
    return f"{PRESENCE_PREFIX}{user_id}"
