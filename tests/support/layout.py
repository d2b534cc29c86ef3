"""The partitioned key layout (chatkit/keys.py, chatkit/partitions.py) as the test stacks run
it, for tests that look at Redis directly: the default CHAT_PARTITIONS."""

from __future__ import annotations

from chatkit import keys
from chatkit.dialogs import DialogKey
from chatkit.partitions import Partitions
from chatkit.settings import Settings

PARTITIONS = Partitions(Settings().partitions)
TAGS = PARTITIONS.tags()
MESSAGES = [keys.messages(tag) for tag in TAGS]
CHAT_REQUESTS = [keys.chat_requests(tag) for tag in TAGS]
AUTH_REQUESTS = [keys.auth_requests(tag) for tag in TAGS]


def tag(dialog_id: str) -> str:
    return PARTITIONS.dialog_tag(DialogKey.parse(dialog_id))


def seq(dialog_id: str) -> str:
    return keys.dialog_seq(tag(dialog_id), dialog_id)


def pending(dialog_id: str) -> str:
    return keys.dialog_pending(tag(dialog_id), dialog_id)


def record(dialog_id: str, sender_id: int, client_msg_id: str) -> str:
    return keys.client_msg_id(tag(dialog_id), dialog_id, sender_id, client_msg_id)


def messages(dialog_id: str) -> str:
    """The partition of the messages stream a dialog's messages go to."""
    return keys.messages(tag(dialog_id))


def chat_requests_of_user(user_id: int) -> str:
    return keys.chat_requests(PARTITIONS.user_tag(user_id))
