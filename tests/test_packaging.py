"""Every file a service needs at run time is in its package (the images install the packages, not
the source tree): a dbt seed left out of package-data fails only in the container otherwise."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = sorted(p for p in ROOT.glob("services/*/pyproject.toml"))
SKIP_PARTS = {"__pycache__", "target", "logs", "dbt_packages"}


@pytest.mark.parametrize("pyproject", PROJECTS, ids=lambda p: p.parent.name)
def test_package_data_covers_every_non_python_file(pyproject: Path) -> None:
    config = tomllib.loads(pyproject.read_text())
    package_data: dict[str, list[str]] = config.get("tool", {}).get("setuptools", {}).get("package-data", {})
    src = pyproject.parent / "src"
    missing = []
    for package_dir in (d for d in src.iterdir() if d.is_dir() and (d / "__init__.py").exists()):
        patterns = package_data.get(package_dir.name, [])
        for path in package_dir.rglob("*"):
            if not path.is_file() or path.suffix in {".py", ".pyc"} or SKIP_PARTS & set(path.parts):
                continue
            relative = path.relative_to(package_dir).as_posix()
            if not any(fnmatch.fnmatch(relative, pattern.replace("**/", "*")) for pattern in patterns):
                missing.append(f"{package_dir.name}/{relative}")
    assert not missing, f"{pyproject}: not in package-data: {missing}"


def test_the_cockroachdb_macro_overrides_are_the_same_in_both_dbt_projects() -> None:
    # Each image ships only its own package, so each dbt project carries its own copy of the
    # overrides (hidden columns, no merge); this keeps the two copies from drifting apart.
    copies = sorted(ROOT.glob("services/*/src/*/dbt/macros/cockroach_compat.sql"))
    assert len(copies) == 2, copies
    assert copies[0].read_text() == copies[1].read_text(), f"{copies[0]} and {copies[1]} differ"
