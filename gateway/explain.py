"""msgspec's validation messages, said the protocol's way (docs/PROTOCOL.md, "Errors"): the
field, what was expected and what came, in JSON's words (string, number, object, array, null),
never Python's (``str``, ``NoneType``, ``list``) nor a regex. Pure code.

    "Expected `str` of length >= 3 - at `$.username`"
        -> "username: expected at least 3 characters, got 2"
    "Expected `int | null`, got `float` - at `$.limit`"
        -> "limit: expected an integer or null, got a number (1.5)"
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

# What a person should be told a field must look like, where msgspec would quote a regex.
FIELD_RULES = {
    "username": "3 to 32 letters, digits, '_', '.' or '-'",
    "email": "an address like name@example.org",
}
# Every required field of every client frame is a string (chatkit/wire.py).
REQUIRED_KIND = "a string"

_AT = re.compile(r" - at `(?P<key>key` in `)?\$\.?(?P<path>[^`]*)`$")
_TYPES = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_LENGTH = re.compile(r"^Expected `(?:str|array|object)` of length (?P<op>[<>]=?) (?P<n>\d+)$")
_BOUND = re.compile(r"^Expected `(?:int|float)` (?P<op>[<>]=?) (?P<n>-?\d+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")

# msgspec's type names -> JSON's, with an article.
_KINDS = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "null": "null", "object": "an object", "array": "an array",
}
_encode = msgspec.json.Encoder().encode


def describe(value: Any) -> str:
    """A decoded JSON value, as JSON would call it; short scalars shown as they came."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        shown = _encode(value).decode()
        return f"a number ({shown})" if len(shown) <= 24 else f"a number of {len(shown)} digits"
    if isinstance(value, str):
        return f"a string of {len(value)} character{'' if len(value) == 1 else 's'}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def field_message(detail: str, raw: dict[str, Any]) -> str:
    """``detail`` (a msgspec ValidationError's text for the frame ``raw``) in the protocol's
    form: "<field>: expected <what>, got <what came>"."""
    missing = _MISSING.match(detail)
    if missing:
        return f"{missing.group('field')}: expected {REQUIRED_KIND}, got nothing"
    at = _AT.search(detail)
    reason = detail[: at.start()] if at else detail
    path = at.group("path") if at else ""
    if at and at.group("key"):
        path = f"{path} (a key)"
        value: Any = _first_key(raw, at.group("path"))
    else:
        value = _at(raw, path)
    field = path.split("[", 1)[0].split(".", 1)[0]
    path = path.replace("[...]", " (a value)")
    return f"{path or 'frame'}: {_expectation(reason, field, value)}"


def _expectation(reason: str, field: str, value: Any) -> str:
    if m := _TYPES.match(reason):
        expected = " or ".join(_KINDS.get(part.strip(), part.strip()) for part in m.group("expected").split("|"))
        got = describe(value) if value is not _UNKNOWN else _KINDS.get(m["got"], m["got"])
        return f"expected {expected}, got {got}"
    if m := _LENGTH.match(reason):
        most = m.group("op").startswith("<")
        got = str(len(value)) if isinstance(value, str | list | dict) else "something else"
        return f"expected at {'most' if most else 'least'} {m.group('n')} characters, got {got}"
    if m := _BOUND.match(reason):
        return f"expected an integer {m.group('op')} {m.group('n')}, got {_shown(value)}"
    if "regex" in reason:
        rule = FIELD_RULES.get(field, "the documented format")
        return f"expected {rule}, got {_shown(value)}"
    if reason.startswith("Invalid value") and field == "type":
        return "expected one 'type', got more than one"
    # A message this module does not know yet: msgspec's own words, lowercased.
    return f"{reason[:1].lower()}{reason[1:]}"


_UNKNOWN = object()


def _shown(value: Any) -> str:
    if value is _UNKNOWN:
        return "something else"
    if isinstance(value, str):
        shown = _encode(value).decode()
        return shown if len(shown) <= 40 else f"{describe(value)}"
    return describe(value)


def _at(raw: Any, path: str) -> Any:
    """The value at a msgspec path (``dialogs[...]`` means some value of the object)."""
    value = raw
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part == "[...]":
            if not isinstance(value, dict) or not value:
                return _UNKNOWN
            # Which value msgspec refused is not said: the first that is not a count fits.
            bad = [v for v in value.values() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
            value = bad[0] if bad else _UNKNOWN
        elif part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return _UNKNOWN
            value = value[index]
        else:
            if not isinstance(value, dict) or part not in value:
                return _UNKNOWN
            value = value[part]
    return value


def _first_key(raw: Any, path: str) -> Any:
    container = _at(raw, path)
    if isinstance(container, dict):
        long = [k for k in container if len(k) > 64]
        return long[0] if long else _UNKNOWN
    return _UNKNOWN
