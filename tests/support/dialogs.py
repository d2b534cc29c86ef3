"""How a dialog id and its table are spelt. docs/PROTOCOL.md calls the id opaque: no test
writes the format anywhere else, so a change of format is a change here."""

from __future__ import annotations


def id_of(a: int, b: int) -> str:
    """The id the server gives the dialog of users ``a`` and ``b`` (in either order)."""
    lo, hi = sorted((a, b))
    return f"{lo}_{hi}"


def misordered_id_of(a: int, b: int) -> str:
    """A look-alike of the dialog id of ``a`` and ``b`` that is not one: the server refuses it."""
    lo, hi = sorted((a, b))
    return f"{hi}_{lo}"


def table_of(dialog_id: str) -> str:
    """The bare name of the dialog's history table, as PostgreSQL's catalogs spell it."""
    lo, hi = dialog_id.split("_")
    return f"chat_{lo}_{hi}"
