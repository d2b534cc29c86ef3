"""The partition tags (chatkit/partitions.py): every precomputed tag lands on the slot the table
says, and partitions spread evenly over primaries that split the slots evenly."""

from __future__ import annotations

from collections import Counter

import pytest

from chatkit.dialogs import DialogKey
from chatkit.partitions import MAX_PARTITIONS, SLOTS, TAGS, Partitions, crc16, slot
from chatkit.settings import SettingsError

POWERS = [2**k for k in range(11)]


def primary_of(slot_number: int, primaries: int) -> int:
    """The primary serving a slot when the slots are cut into equal ranges, as
    ``valkey-cli --cluster create`` cuts them."""
    return next(i for i in range(primaries) if slot_number < (i + 1) * SLOTS // primaries)


def test_crc16_and_slots_match_the_cluster_specification() -> None:
    # The check value of CRC16-XMODEM, and slots the Redis Cluster specification gives.
    assert crc16(b"123456789") == 0x31C3
    assert slot("foo") == 12182
    assert slot("{user1000}.following") == slot("{user1000}.followers") == slot("user1000")
    # An empty tag is no tag: the whole key is hashed.
    assert slot("foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS
    assert slot("foo{{bar}}zap") == slot("{bar")


def test_every_precomputed_tag_lands_on_its_slot() -> None:
    assert len(TAGS) == MAX_PARTITIONS == len(set(TAGS))
    assert [slot(tag) for tag in TAGS] == [16 * j + 8 for j in range(MAX_PARTITIONS)]
    assert all(tag.isascii() and tag.isalnum() for tag in TAGS)


@pytest.mark.parametrize("count", POWERS)
def test_partitions_spread_evenly_over_primaries(count: int) -> None:
    partitions = Partitions(count)
    tags = partitions.tags()
    assert len(set(tags)) == count
    assert all(partitions.tag(p) == f"{{{TAGS[j]}}}" for p, j in enumerate(_indexes(count)))
    for primaries in range(1, 11):
        load = Counter(primary_of(slot(tag), primaries) for tag in tags)
        counts = [load[i] for i in range(primaries)]
        assert max(counts) - min(counts) <= 1, (count, primaries, counts)


def test_naive_tags_would_not_spread_evenly() -> None:
    # Why the table exists: {0}..{15} put 9 of 16 partitions on one primary of three.
    load = Counter(primary_of(slot(f"{{{p}}}"), 3) for p in range(16))
    assert max(load.values()) - min(load.values()) > 1, load


def _indexes(count: int) -> list[int]:
    step = MAX_PARTITIONS // count
    return [p * step + step // 2 for p in range(count)]


def test_users_and_dialogs_spread_over_partitions() -> None:
    partitions = Partitions(16)
    users = Counter(partitions.of_user(user_id) for user_id in range(1, 1601))
    assert sorted(users) == list(range(16)) and set(users.values()) == {100}
    dialogs = Counter(partitions.of_dialog(DialogKey(lo, hi)) for lo in range(1, 60) for hi in range(lo + 1, 61))
    assert sorted(dialogs) == list(range(16))
    assert max(dialogs.values()) < 2 * min(dialogs.values()), dialogs
    assert partitions.of_dialog(DialogKey(3, 7)) == partitions.of_dialog(DialogKey.of(7, 3))


@pytest.mark.parametrize("count", [0, 3, 12, MAX_PARTITIONS * 2, -4])
def test_a_count_that_is_not_a_power_of_two_up_to_the_maximum_is_refused(count: int) -> None:
    with pytest.raises(SettingsError, match=f"CHAT_PARTITIONS: expected a power of two from 1 to 1024, got {count}"):
        Partitions(count)
