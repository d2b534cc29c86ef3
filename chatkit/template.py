"""Encoding a struct from pieces cut once: encode it with a placeholder in each field that
varies, cut the bytes at each placeholder's encoding, and later join the pieces with the
encoded values. msgspec writes every fixed byte (field names and order, tags, defaults), so
the pieces follow the schema; only the values that vary are encoded per use.

A placeholder must encode to bytes found nowhere else in the template: a string from
:func:`placeholder` (its JSON carries NUL escapes no field name has), a struct holding one, or
an int no other field of the template holds. :func:`cut` checks that each occurs exactly once,
in the order given, and says which one does not.
"""

from __future__ import annotations


def placeholder(name: str) -> str:
    """A string value to stand for a field in a template."""
    return f"\x00{name}\x00"


def cut(encoded: bytes, *marks: bytes) -> tuple[bytes, ...]:
    """The pieces of ``encoded`` around each mark: one more piece than marks. Each mark must
    occur exactly once, and in the order given."""
    pieces: list[bytes] = []
    rest = encoded
    for mark in marks:
        found = encoded.count(mark)
        if found != 1:
            raise ValueError(f"expected placeholder {mark!r} exactly once in template {encoded!r}, found {found}")
        before, hit, rest = rest.partition(mark)
        if not hit:
            raise ValueError(f"expected placeholders in the order {marks!r}, got {mark!r} too early in {encoded!r}")
        pieces.append(before)
    pieces.append(rest)
    return tuple(pieces)
