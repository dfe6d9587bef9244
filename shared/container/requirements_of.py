"""Print the third-party requirements of the given ``pyproject.toml`` files, one per line.

The Dockerfiles install these before copying any source, so the dependency layer is rebuilt when a
pin changes and not on every code change. A dependency on one of the given projects (``etl-shared``,
with extras such as ``etl-shared[dbt]``) is replaced by that project's own requirements and the
named extras' requirements.

    python shared/container/requirements_of.py shared/pyproject.toml services/staging/pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_of(paths: list[Path]) -> list[str]:
    projects = {}
    for path in paths:
        project = tomllib.loads(path.read_text())["project"]
        projects[_canonical(project["name"])] = project
    wanted: list[str] = []
    seen_extras: set[tuple[str, str]] = set()

    def add(requirement: str) -> None:
        match = _NAME.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name = _canonical(match.group(1))
        if name not in projects:
            if requirement not in wanted:
                wanted.append(requirement)
            return
        extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
        for extra in extras:
            if (name, extra) in seen_extras:
                continue
            seen_extras.add((name, extra))
            optional = projects[name].get("optional-dependencies", {})
            if extra not in optional:
                raise SystemExit(f"{name} has no extra {extra!r}")
            for req in optional[extra]:
                add(req)

    for project in projects.values():
        for requirement in project.get("dependencies", []):
            add(requirement)
    return wanted


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(__doc__ or "")
        return 2
    for requirement in requirements_of([Path(a) for a in argv]):
        sys.stdout.write(requirement + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
