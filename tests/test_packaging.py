"""Every file a service needs at run time is in its package (the images install the packages, not
the source tree): a dbt seed left out of package-data fails only in the container otherwise."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = sorted([ROOT / "shared" / "pyproject.toml", *ROOT.glob("services/*/pyproject.toml")])
DOMAINS = sorted(ROOT.glob("domains/*/pyproject.toml"))
SKIP_PARTS = {"__pycache__", "target", "logs", "dbt_packages"}


def _not_covered(
    package_dir: Path, patterns: list[str], name: str, *, skip: set[str] = frozenset()
) -> list[str]:
    missing = []
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        if not path.is_file() or path.suffix in {".py", ".pyc"} or SKIP_PARTS & set(relative.parts):
            continue
        if relative.as_posix() in skip or any(part.endswith(".egg-info") for part in relative.parts):
            continue
        if not any(fnmatch.fnmatch(relative.as_posix(), pattern.replace("**/", "*")) for pattern in patterns):
            missing.append(f"{name}/{relative.as_posix()}")
    return missing


@pytest.mark.parametrize("pyproject", PROJECTS, ids=lambda p: p.parent.name)
def test_package_data_covers_every_non_python_file(pyproject: Path) -> None:
    config = tomllib.loads(pyproject.read_text())
    package_data: dict[str, list[str]] = config.get("tool", {}).get("setuptools", {}).get("package-data", {})
    src = pyproject.parent / "src"
    missing = []
    for package_dir in (d for d in src.iterdir() if d.is_dir() and (d / "__init__.py").exists()):
        missing += _not_covered(package_dir, package_data.get(package_dir.name, []), package_dir.name)
    assert not missing, f"{pyproject}: not in package-data: {missing}"


@pytest.mark.parametrize("pyproject", DOMAINS, ids=lambda p: p.parent.name)
def test_an_installable_domain_ships_every_file_of_its_folder(pyproject: Path) -> None:
    # the demo's domain is its folder, installed as a package (package-dir maps it to ".")
    setuptools = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    (package,) = setuptools["packages"]
    assert setuptools["package-dir"] == {package: "."}
    missing = _not_covered(
        pyproject.parent, setuptools["package-data"][package], package, skip={"pyproject.toml"}
    )
    assert not missing, f"{pyproject}: not in package-data: {missing}"


def test_no_macro_is_defined_twice() -> None:
    # the platform's macros are one dbt package; the zones' projects and the domains hold no copy
    import re

    defined: dict[str, list[str]] = {}
    folders = [ROOT / "shared/src/etl_shared/dbt", *ROOT.glob("domains/*")]
    for folder in folders:
        for path in folder.rglob("*.sql"):
            for name in re.findall(r"{%-?\s*(?:macro|test)\s+(\w+)\s*\(", path.read_text()):
                defined.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in defined.items() if len(paths) > 1}
    assert not twice, twice
    assert len(defined) > 40
    assert not list(ROOT.glob("services/*/src/*/dbt")), "a zone's package carries dbt files again"
