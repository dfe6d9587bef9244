"""Lint is part of the test command: ruff on the Python, sqlfluff on migrations and dbt models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL_FOLDERS = [
    "shared/src/etl_shared/migrations",
    "domains/commerce/conformed/models",
    "domains/commerce/semantic/models",
    # the second domains of the tests; insurance's conformed models are the scaffold's output
    "tests/domains",
]


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:]


def test_sqlfluff_is_clean() -> None:
    result = subprocess.run(
        [_tool("sqlfluff"), "lint", *SQL_FOLDERS], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-5000:]


def test_no_file_holds_a_merge_conflict() -> None:
    """A conflicted merge once committed its markers into docs/data-model.md, and every test passed."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in tracked.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes()
        if b"\0" in text[:8000]:
            continue  # binary
        found += [
            f"{name}:{number}"
            for number, line in enumerate(text.splitlines(), start=1)
            if line.startswith((b"<<<<<<< ", b">>>>>>> ")) or line == b"======="
        ]
    assert not found, found


def test_dockerfiles_are_hadolint_clean_and_follow_the_image_rules() -> None:
    dockerfiles = sorted(ROOT.glob("services/*/Dockerfile"))
    assert {p.parent.name for p in dockerfiles} >= {"staging", "conformed", "semantic"}
    result = subprocess.run(
        [_tool("hadolint"), *map(str, dockerfiles)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in dockerfiles:
        text = path.read_text()
        zone = path.parent.name
        assert text.count("FROM ${BASE_IMAGE}") == 2, f"{path}: multi-stage, both from the base argument"
        assert "ARG BASE_IMAGE=python:3.11-slim" in text, path
        # dependencies are installed before any source is copied
        assert text.index("-r requirements.txt") < text.index("COPY shared/ shared/"), path
        assert "USER 10001" in text, f"{path}: runs as a non-root user"
        assert f'ENTRYPOINT ["etl-{zone}"]' in text, path
        assert "requirements-dev" not in text and "pytest" not in text, f"{path}: no development tools"
