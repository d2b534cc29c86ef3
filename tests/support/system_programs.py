"""Programs from Debian that some tests need (nginx, chromium, promtool). `.ci/system-packages` installs
them where it can (`make test` and `.ci/run` run it); where it could not, the test skips with
the reason, except under CI=true, where a missing program fails the test."""

from __future__ import annotations

import os
import shutil

import pytest

_SBIN = "/usr/sbin:/usr/local/sbin:/sbin"


def require_program(program: str, package: str, needed_for: str) -> str:
    """The path of ``program``, or skip (fail under CI=true) naming how to get it."""
    found = shutil.which(program) or shutil.which(program, path=_SBIN)
    if found is not None:
        return found
    reason = (
        f"{needed_for} needs {program} (Debian package {package}), not installed here: "
        f"run `bash .ci/system-packages` as root (make test does), or apt-get install {package}"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " [CI=true: missing programs fail, they do not skip]")
    pytest.skip(reason)
