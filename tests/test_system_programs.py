"""A test that needs a program from Debian skips without it, naming the fix, but fails under CI."""

from __future__ import annotations

import pytest

from tests.support.system_programs import require_program


def test_a_present_program_is_found() -> None:
    assert require_program("sh", "dash", "this test").endswith("/sh")


def test_a_missing_program_skips_with_the_way_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-program-h7 \(Debian package pkg-h7\).*system-packages"):
        require_program("no-such-program-h7", "pkg-h7", "this test")


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_program("no-such-program-h7", "pkg-h7", "this test")
