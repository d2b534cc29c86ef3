"""chatkit.redis.address: the Redis URL parsed by our own documented rules; a bad URL is refused
saying what was expected and what came, and a password never shows."""

from __future__ import annotations

import pytest

from chatkit.redis import RedisAddress, parse_address
from chatkit.settings import SettingsError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress("127.0.0.1", 6379, 0)),
        ("redis://cache", RedisAddress("cache", 6379, 0)),
        ("redis://cache:7000/3", RedisAddress("cache", 7000, 3)),
        ("redis://cache/", RedisAddress("cache", 6379, 0)),
        ("redis://cache?db=5", RedisAddress("cache", 6379, 5)),
        ("redis://cache/5?db=5", RedisAddress("cache", 6379, 5)),
        ("redis://:s3cret@cache", RedisAddress("cache", 6379, 0, None, "s3cret")),
        ("redis://alice:s3cret@cache:1/2", RedisAddress("cache", 1, 2, "alice", "s3cret")),
        ("redis://al%40ce:p%2Fw%40rd@cache", RedisAddress("cache", 6379, 0, "al@ce", "p/w@rd")),
        ("redis://[::1]:6380", RedisAddress("::1", 6380, 0)),
        ("unix:///run/valkey.sock", RedisAddress(path="/run/valkey.sock")),
        ("unix://:pw@/run/valkey.sock?db=2", RedisAddress(db=2, password="pw", path="/run/valkey.sock")),
    ],
)
def test_good_urls(url: str, expected: RedisAddress) -> None:
    assert parse_address(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://cache:6379", "expected redis://"),
        ("cache:6379", "expected redis://"),
        ("", "expected redis://"),
        ("rediss://cache", "TLS (rediss://) is not supported"),
        ("redis://cache:port", "expected redis://"),
        ("redis://cache:70000", "expected redis://"),
        ("redis:///0", "expected a host after redis://"),
        ("redis://cache/zero", "expected a database number (0 or more), got 'zero'"),
        ("redis://cache/-1", "expected a database number (0 or more), got '-1'"),
        ("redis://cache/1?db=2", "two different databases (/1 and ?db=2)"),
        ("redis://cache?timeout=5", "the only query option understood is db, got timeout"),
        ("redis://alice@cache", "a username needs a password"),
        ("unix://", "expected a socket path after unix://"),
    ],
)
def test_bad_urls_say_what_was_expected_and_what_came(url: str, complaint: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parse_address(url)
    message = str(refused.value)
    assert message.startswith("Redis URL: "), message
    assert complaint in message, message
    assert repr(url) in message or url in message, message


def test_a_password_never_shows() -> None:
    address = parse_address("redis://alice:hunter2@cache:6380/1")
    assert str(address) == "redis://alice:***@cache:6380/1"
    assert "hunter2" not in repr(address)
    assert str(parse_address("unix://:hunter2@/tmp/v.sock?db=4")) == "unix://:***@/tmp/v.sock?db=4"
    assert str(parse_address("redis://cache")) == "redis://cache:6379/0"
    for bad in ("http://alice:hunter2@cache", "redis://alice:hunt/er2@cache/x", "redis://:hunter2@cache/x"):
        with pytest.raises(SettingsError) as refused:
            parse_address(bad)
        assert "hunter2" not in str(refused.value) and "hunt/er2" not in str(refused.value)
        assert ":***@" in str(refused.value)


def test_setup_commands_authenticate_then_select() -> None:
    assert parse_address("redis://cache").setup_commands() == []
    assert parse_address("redis://:pw@cache/2").setup_commands() == [("AUTH", "pw"), ("SELECT", 2)]
    assert parse_address("redis://bob:pw@cache").setup_commands() == [("AUTH", "bob", "pw")]
