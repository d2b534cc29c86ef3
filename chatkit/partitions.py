"""Partitions of the data layout, and the hash tags that place them on Redis Cluster slots.

Redis Cluster keeps a key on the node serving ``slot(key) = CRC16(key) mod 16384``, where a key
holding a hash tag (the text between its first ``{`` and the next ``}``) is hashed by the tag
alone. Keys sharing a tag share a slot, so a script or transaction over them stays on one node.

The data is cut into a fixed number of partitions (``CHAT_PARTITIONS``, a power of two up to
:data:`MAX_PARTITIONS`; part of the data layout: changing it is a migration). Partition ``p``
of ``n`` gets a tag whose slot lies in the middle of the ``p``-th of ``n`` equal slot ranges, so
partitions spread evenly over primaries that split the slots evenly (as ``valkey-cli --cluster
create`` does), which the tags ``{0}..{n-1}`` would not. :data:`TAGS` is precomputed (the
shortest string, over digits and lowercase letters, whose slot is ``16 j + 8``; the test in
tests/test_partitions.py checks every entry against :func:`slot`). On a single server the tags
cost a few bytes per key name and nothing else.

A dialog's partition comes from its two user ids, a user's from the user id: stable, computed
without I/O in every process."""

from __future__ import annotations

from dataclasses import dataclass

from chatkit.dialogs import DialogKey
from chatkit.settings import SettingsError

SLOTS = 16384
MAX_PARTITIONS = 1024

# TAGS[j] is a hash tag whose slot is 16 * j + 8 (space-separated, 1024 entries).
TAGS: tuple[str, ...] = tuple(
    " ".join((
        "fkt 2s4 cv 3gw 7mm r35 c7v ban j3b 6f2 cj1 76y 3xk 8b z9 fth 1br 04j 029 9m9 hms a2s 4zx 5hh 5wt",
        "4ed 4c7 h6g d5e mje 8ff 19f e4 3a5 3gf cg c14 jn4 jhg c7g cls 7t3 76h kc8 8s 3xz f0q 2l9 0ps 1bc",
        "1d0 e8x 482 hmb 5hy 4zi 4eu 53m 5q6 aiv ecl 9r4 19w 0oo 3ed ae g6 3c7 jje c5e 69f jl6 74j 6br",
        "cnq 729 f2s gdk 2hh 3zx 1f2 892 06y 9iy hi3 4xk ath qdh 5s4 akt 4gw 51o 92m 0mm ean 9p6 at 3eu",
        "fiv 2q6 c5t bcl 7oo 69w 6bc 7ps b8x 6d0 gdz 382 3zi 2hy 0t3 dls 9ih 06h 4xz 5jj 5l9 a0q 4a5 h4e",
        "5uv 4gf 8dd 9vt d7g 8b7 bgy c1a 6yj 7kz fk0 ea c2 3g3 f6w oiw 2ll w24 70n 6fv cju 7r5 hm7 48g",
        "a4d hkd 1b6 ezv 0vu 1de 96i 0ii eej 9t2 538 aop 4cs 55k c1p 7m8 7kk kz3 ep 3aq fmr 2u2 87 f6f",
        "f05 zl 6fg 7tw bxt cjd 48v 5nn hku a4u 0p7 dhw 1dt 02l 0ix 96x 193 8f3 4e1 h0a 55z 4cb 7ii kx1",
        "c3r bej fop 238 gr 3cs 38g xn okd f4d bzv 6b6 6de 7vu hiw a6w p24 5ll 1fv 00n n dju d1a 8d1 0kz",
        "1yj 57x ak0 4g3 h2c c50 7ix jlc 693 a0 3e1 3cb gc 2nn 38v f4u gbm chw 7p7 72l 6dt a6f hif ho5",
        "a05 0tw 1fg djd ext 0m8 928 94k 0kk 4aq 57i 5u2 amr fzv 2b6 rt 3vu 78g km7 kkd b4d bop 638 65k",
        "7cs 3ii mh g3r fej 17x 8hx 0g3 983 h8y agy 4kz 5yj 5fv 40n 4r5 hcm liw 8q7 83l 1ll t6 3p7 32l 6m",
        "6nn 78v b4u cbm c9y 7e1 7cb 65z my 3ix nlc 293 0aq 17i 1u2 emr 4m8 h8h hz3 4kk 4tw 5fg qht axt",
        "e6f 9c6 9ee 8wu 30n 4o v4 3r5 b6w kiw 6ll s24 bk0 67x k2c 7g3 fgy g1a 2yj 3kz 138 8l8 0cs 15k",
        "hx1 4ii aej q1b 5b6 azv 4vu 5de 9gg 08g e4d 9a4 pv 3tw fxt gjd kif b6f b05 ko5 67i 7aq bmr 6u2",
        "i9 3m8 3kk oj 0e1 d9y 15z 0cb 4ix yz0 593 ilc 4p7 hao 5dt 42l 08v 1nn dbm 8s5 b2s cdk 6hh 7zx",
        "34j 0k 68 329 nje g5e 29f nl6 7ed 6wt k6g 7c7 q35 4mm aan hzf 1s4 ekt 0gw 11o 9cc 0xk eth 9e0",
        "5f2 i3b 46y ya9 cdz 782 7zi 6hy 0z 3ps f8x 2d0 g5t fcl 3oo kn 63m 7eu biv 6q6 in4 093e hzw ihg",
        "0a5 dyu 1uv 0gf 0xz 1jj 1l9 839 4t3 hek hc8 46h 7xk ki3 cfx bth n3b 2f2 2x 36y 3mm il g7v fan",
        "bkt 6s4 61o 7gw hxu ije il6 59f 1wt 0ed 0c7 l6g ddk 8u3 0zx 1hh 5br 44j 429 hgi 6jj 7xz b0q 6l9",
        "p2 3t3 36h 2i g14 nn4 nhg g7g cyu 7a5 7gf 6uv acl hxd 59w 4oo 0eu 13m 1q6 eiv 082 9g2 1hy 0zi",
        "4ps 5bc 5d0 a8x 1cb 05z e9y 1e1 hlc 493 a50 5ix 52l 4dt ahw 5p7 9s5 ebm 0nn 18v fjd d5 bf 3fg",
        "jo5 c05 c6f jif 7u2 cmr 6aq 77i nz3 9r 2m8 f1p 05k 1cs 9l8 038 a3r hlr 5ii ix1 4de 5vu h7f 4b6",
        "8a4 d4d 18g 8gg 2r5 fju 3fv bw r24 7ll jiw c6w 6g3 j2c 77x ck0 9c 3yj f1a ggy dmr 0u2 07i 1aq",
        "5kk iz3 a1p 5m8 h5d ajd 4fg 5tw 9wu 8ee 8c6 d6f 3dt 22l 2p7 fhw bbm c4u 68v 7nn 75z 6cb 6e1 b9y",
        "393 olc 2ix f50 883 1g3 9hx 07x 4yj 5kz hna a1a aju 5r5 50n 4fv 0ll 93l 9q7 miw 2vu 3de 3b6 f7",
        "c4d jkd jm7 68g 6cs 75k 738 cop gej f3r nx1 2ii 5oo 49w a5t hjt div 0q6 03m 1eu 1zi 0hy 8g2 182",
        "huh 4d0 4bc 5ps 7l9 c0q 6xz 7jj nc8 dq 2t3 fls f7g 96 on4 f14 7uv 6gf 6a5 byu 49f hl6 hje a5e",
        "m6g 1c7 1ed 0wt 0hh 1zx 9u3 edk anq 529 54j 4br cth bfx ji3 6xk 26y fj1 3f2 b3 gan f7v w35 2mm",
        "6gw 71o 7s4 ckt hhg a7g a14 hn4 1gf 0uv eyu 1a5 939 0l9 0jj 1xz 56h ic8 als 5t3 7hy 6zi 682 bdz",
        "3d0 g8x fb 3bc 39w 2oo gcl f5t 7q6 civ 6eu 73m a7v hhv 5mm p35 01o 1gw dkt 0s4 8e0 dth 1xk 8cc",
        "aj1 56y h3b 4f2 6zx 7hh bdk c2s 229 fnq 3br fs yo 39f f5e oje 6c7 j6g 7wt 6ed 16h 8ih els 1t3",
        "h9i 4l9 4jj 5xz 5gf 4uv ayu 5a5 9b7 e7g 8vt 9dd 3q6 u7 7l 33m 79w 6oo ccl b5t 7d0 c8x 6ps 7bc",
        "3hy lx 282 fdz 8iy 16y 992 0f2 afx h9x 5xk ii3 41o 5gw hbl 4s4 8p6 dan 1mm 82m 2c7 n6g 3wt su",
        "kl6 79f b5e kje 629 bnq 7br 64j li 3hh fdk g2s d8x 0d0 0bc 1ps 5zi 4hy adz 582 qkf 4q6 43m 5eu",
        "1oo 09w 8r4 dcl 3uv qw 2a5 fyu b7g khg kn4 b14 jc8 66h 6t3 bls 3l9 h8 nk 3jj 8m9 129 14j 0br 4hh",
        "5zx q0c adk i6g 5c7 5ed 4wt 09f 9ff lje e5e 5n 31o 3s4 w5 can b7v s35 6mm 66y bj1 7f2 k3b gth",
        "ffx ni3 nz 092d io5 iif q4v dxt ejd 0fg 1tw 1kk 84k 828 1m8 hdj 4u2 47i 5aq 793 klc 6ix b50 35z",
        "us 2e1 f9y fbm g4u jo 3nn 7dt 62l 6p7 bhw 4ll q24 q4g iiw eju 1r5 10n 0fv 0yj 1kz 9d1 e1a i2c",
        "5g3 09ia 47x cej b3r jx1 6ii 1j 35k 338 79 g4d nkd nm7 28g 6vu 7de 7b6 czv hye abm 4nn 58v 12l",
        "0dt ehw 1p7 9f3 093 86x 1ix 5cb 45z a9y 5e1 jz3 6kk 6m8 b1p 3u2 q3 3h 37i no5 g05 g6f nif bjd",
        "cxt 6tw 7fg ikd hyt 58g im7 0de 1vu dzv 0b6 8t2 dej 1ii 86i 45k 5cs hfh 438 6kz 7yj b1a cgy 2g3",
        "n2c 37x 3y hm 3ll niw g6w 6r5 bju 7fv 60n",
    )).split()
)


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster slots keys by."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def slot(key: str | bytes) -> int:
    """The cluster slot of a key (or of a sharded pub/sub channel), hash tags honoured."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


@dataclass(frozen=True, slots=True)
class Partitions:
    """``count`` partitions and their tags (``{...}``, braces included, ready for a key name)."""

    count: int

    def __post_init__(self) -> None:
        count = self.count
        if type(count) is not int or not 0 < count <= MAX_PARTITIONS or count & (count - 1):
            raise SettingsError(
                f"CHAT_PARTITIONS: expected a power of two from 1 to {MAX_PARTITIONS}, got {count!r}"
            )

    def tag(self, partition: int) -> str:
        step = MAX_PARTITIONS // self.count
        return "{" + TAGS[partition * step + step // 2] + "}"

    def tags(self) -> list[str]:
        return [self.tag(partition) for partition in range(self.count)]

    def of_user(self, user_id: int) -> int:
        return user_id % self.count

    def of_dialog(self, key: DialogKey) -> int:
        # Both ids: the dialogs of one busy user spread over partitions.
        return (key.lo * 0x9E3779B1 + key.hi) % self.count

    def dialog_tag(self, key: DialogKey) -> str:
        return self.tag(self.of_dialog(key))

    def user_tag(self, user_id: int) -> str:
        return self.tag(self.of_user(user_id))
