"""docs/onboarding.md, followed literally: every file it shows is written, every edit applied and
every command run, in order, against a real source database and warehouse. The domain folder it ends
with must be tests/domains/insurance (the second domain of tests/test_second_domain.py), file for
file. ETL_TEST_UPDATE_DOMAIN=1 copies the result there instead (after a deliberate change to the
tutorial or to the scaffold)."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from insurance_source import load_source

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "onboarding.md"
DOMAIN = ROOT / "tests" / "domains" / "insurance"
STEP = re.compile(
    r"^<!-- (file|edit): (\S+) -->\n```\w*\n(.*?)^```\n|^<!-- run -->\n```sh\n(.*?)^```\n", re.M | re.S
)


def steps() -> list[tuple[str, str, str]]:
    """(kind, path or '', text) of the tutorial's steps, in order."""
    found = []
    for match in STEP.finditer(TUTORIAL.read_text()):
        if match.group(4) is not None:
            found.append(("run", "", match.group(4)))
        else:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def apply_edit(path: Path, diff: str) -> None:
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+")]
    old, new = "\n".join(removed) + "\n", "\n".join(added) + "\n"
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: the tutorial's edit expects exactly one {old!r}"
    path.write_text(text.replace(old, new))


def test_the_tutorial_onboards_the_insurance_domain(tmp_path: Path, db_server: Any) -> None:
    found = steps()
    kinds = [kind for kind, _, _ in found]
    assert kinds.count("run") >= 6 and kinds.count("file") >= 9 and kinds.count("edit") >= 3
    source_url = db_server.create_database("insurance")
    load_source(source_url)
    work = tmp_path / "team"
    work.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        ETL_DATABASE_URL=db_server.create_database("wh"),
        ETL_INSURANCE_DATABASE_URL=source_url,
        ETL_DOMAINS=str(work / "insurance"),
        ETL_DATA_DIR=str(tmp_path / "data"),
    )
    for kind, path, text in found:
        if kind == "file":
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        elif kind == "edit":
            apply_edit(work / path, text)
        else:
            for command in (line for line in text.splitlines() if line.strip()):
                result = subprocess.run(
                    ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=900
                )
                assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
                if command.startswith("cat ") and command.endswith('.qvs"'):
                    for table in ("dim_branch", "dim_policy", "dim_claim_date", "fct_claim"):
                        assert table in result.stdout, table
    produced = work / "insurance"
    if os.environ.get("ETL_TEST_UPDATE_DOMAIN") == "1":
        shutil.rmtree(DOMAIN)
        shutil.copytree(produced, DOMAIN)
    different = _differences(produced, DOMAIN)
    assert not different, f"the tutorial's domain differs from tests/domains/insurance: {different}"


def _differences(left: Path, right: Path) -> list[str]:
    compare = filecmp.dircmp(left, right, ignore=["__pycache__", "target", "logs", "dbt_packages"])
    problems = [f"only in the tutorial's: {n}" for n in compare.left_only]
    problems += [f"only in tests/domains: {n}" for n in compare.right_only]
    problems += [
        f"differs: {n}" for n in filecmp.cmpfiles(left, right, compare.common_files, shallow=False)[1]
    ]
    for name in compare.common_dirs:
        problems += [f"{name}/{p}" for p in _differences(left / name, right / name)]
    return problems
