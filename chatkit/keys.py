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

Pub/sub channels (fan-out, at most once; `sync` closes gaps):
    chat:gateway:{gateway_id}   replies to requests that came through one gateway
    chat:user:{user_id}         events for every connection of one user, on any gateway

Keys (``{t}`` the dialog's partition tag):
    chat:dialog:{dialog_id}:{t}:seq      last seq given out in the dialog (INCR)
    chat:dialog:{dialog_id}:{t}:pending  messages sent but not yet stored, scored by seq
    chat:dialog:{dialog_id}:{t}:msgid:{sender_id}:{client_msg_id}
                                         '<seq>:<id>' of the message a client_msg_id made
"""

from __future__ import annotations

DEAD_LETTERS = "chat:dead"

AUTH_GROUP = "auth_service"
CHAT_GROUP = "chat_service"
STORAGE_GROUP = "storage_worker"


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
