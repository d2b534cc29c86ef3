"""README.md documents every setting with its real default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chatkit.settings import Settings, env_name

README = Path(__file__).resolve().parent.parent / "README.md"


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `CHAT_") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[1]
    return rows


@pytest.mark.parametrize("field", dataclasses.fields(Settings), ids=lambda field: field.name)
def test_every_setting_is_documented_with_its_default(field: dataclasses.Field[object]) -> None:
    rows = _table_rows()
    name = env_name(field.name)
    assert name in rows, f"expected a README configuration row for {name}, found rows for {sorted(rows)}"
    if field.default is dataclasses.MISSING:
        return  # computed per process (default_factory), described in words
    expected = f"`{field.default}`" if str(field.default) else "empty"
    assert rows[name] == expected, f"{name}: expected README default {expected}, got {rows[name]}"


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {env_name(field.name) for field in dataclasses.fields(Settings)}
    assert set(_table_rows()) <= known
