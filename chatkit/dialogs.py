"""Dialog identity: a 1:1 dialog is named by its two user ids, smaller first.

The dialog id on the wire is ``"{lo}_{hi}"`` (``"1_12"``) and its history table is
``chat_{lo}_{hi}``: the underscore keeps users 1 and 12 apart from users 11 and 2.
Table names are built only from integers that passed through :class:`DialogKey`, and are
always emitted quoted.
"""

from __future__ import annotations

from dataclasses import dataclass


class BadDialogId(ValueError):
    """A dialog id that is not two distinct positive user ids, smaller first."""


@dataclass(frozen=True, slots=True, order=True)
class DialogKey:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        # bool is an int subclass: refuse it so True/False never name a table.
        if type(self.lo) is not int or type(self.hi) is not int:
            raise BadDialogId(f"expected two integer user ids, got {self.lo!r} and {self.hi!r}")
        if not 0 < self.lo < self.hi:
            raise BadDialogId(f"expected two distinct positive user ids, smaller first, got {self.lo}, {self.hi}")

    @classmethod
    def of(cls, a: int, b: int) -> DialogKey:
        return cls(min(a, b), max(a, b))

    @classmethod
    def parse(cls, dialog_id: str) -> DialogKey:
        lo_text, sep, hi_text = dialog_id.partition("_")
        if not sep or not lo_text.isdigit() or not hi_text.isdigit() or not lo_text.isascii():
            raise BadDialogId(f"expected a dialog id like '1_12', got {dialog_id!r}")
        if lo_text.startswith("0") or hi_text.startswith("0"):
            raise BadDialogId(f"expected a dialog id like '1_12', got {dialog_id!r}")
        return cls(int(lo_text), int(hi_text))

    @property
    def id(self) -> str:
        return f"{self.lo}_{self.hi}"

    @property
    def table(self) -> str:
        """The quoted SQL identifier of this dialog's history table."""
        return f'"chat_{self.lo}_{self.hi}"'

    @property
    def table_name(self) -> str:
        """The bare table name, as PostgreSQL's catalogs spell it."""
        return f"chat_{self.lo}_{self.hi}"

    def has(self, user_id: int) -> bool:
        return user_id in (self.lo, self.hi)

    def peer_of(self, user_id: int) -> int:
        if user_id == self.lo:
            return self.hi
        if user_id == self.hi:
            return self.lo
        raise ValueError(f"user {user_id} is not in dialog {self.id}")
