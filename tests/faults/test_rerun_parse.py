"""A rerun of a dbt zone reuses dbt's parse of the project: nothing the job writes for dbt (the
profile, the project file, the variables) changes from one process to the next when the project did
not change. A profile holding the job's pid made dbt parse everything again on every run (several
seconds of each no-op run)."""

from __future__ import annotations

import json
from pathlib import Path

import fault_support
import pytest
from fault_support import job

staged = fault_support.staged
warehouse = fault_support.warehouse

pytestmark = pytest.mark.e2e


def _parse_events(log: Path, start: int) -> list[str]:
    """dbt's reasons for not parsing partially, in its log after line ``start``."""
    reasons = []
    for line in log.read_text(encoding="utf-8").splitlines()[start:]:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("info", {}).get("name") == "UnableToPartialParse":
            reasons.append(event["data"]["reason"])
    return reasons


@pytest.mark.parametrize("zone", ["conformed", "semantic"])
def test_a_rerun_in_a_new_process_parses_partially(
    staged: fault_support.Staged, warehouse: str, tmp_path: Path, zone: str
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    if zone == "semantic":
        assert job("etl-conformed", "run", env=env).returncode == 0
    first = job(f"etl-{zone}", "run", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    log = tmp_path / "data" / "dbt" / zone / "logs" / "dbt.log"
    lines = len(log.read_text(encoding="utf-8").splitlines())
    # the first run parses everything
    assert _parse_events(log, 0) == ["saved manifest not found. Starting full parse."]
    second = job(f"etl-{zone}", "run", env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _parse_events(log, lines) == []
