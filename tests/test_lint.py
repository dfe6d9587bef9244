"""Lint is part of the test command: ruff on the Python, sqlfluff on migrations and dbt models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL_FOLDERS = [
    "shared/src/etl_shared/migrations",
    "services/conformed/src/etl_conformed/dbt/models",
    "services/semantic/src/etl_semantic/dbt/models",
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
