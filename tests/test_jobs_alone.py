"""Each zone job on its own, as docs/configuration.md says a developer runs them: after `etl-samples
generate`, with the sample APIs served by `etl-samples serve`, `etl-staging run`, `etl-conformed run`
and `etl-semantic run` one by one, with nothing set but a relative ``ETL_DATA_DIR``, from a working
folder that is not the repository root. Everything must land in that data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def command(name: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working folder outside the repository, and an environment with only ETL_DATA_DIR=data."""
    folder = tmp_path / "work"
    folder.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}
    env["ETL_DATA_DIR"] = "data"
    yield folder, env
    postgres = folder / "data" / "postgres"
    if postgres.is_dir():
        from etl_shared import EmbeddedPostgres

        EmbeddedPostgres(postgres).stop()


def test_each_job_alone_with_a_relative_data_folder(elsewhere: tuple[Path, dict[str, str]]) -> None:
    folder, env = elsewhere
    generated = command("etl-samples", "generate", "--orders", "300", cwd=folder, env=env)
    assert generated.returncode == 0, generated.stderr[-3000:]

    # The sample APIs, as `etl-samples serve` runs them (a free port here; its URL in the variable the
    # demo sources file reads, ETL_SAMPLE_API_URL, as docs/configuration.md says).
    server = subprocess.Popen(
        [str(BIN / "etl-samples"), "serve", "--port", "0"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        staging = command("etl-staging", "run", cwd=folder, env={**env, "ETL_SAMPLE_API_URL": url})
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert staging.returncode == 0, staging.stdout[-3000:] + staging.stderr[-3000:]
    assert '"crm.accounts"' in staging.stdout  # the CRM pulled with the demo client, nothing set

    for zone in ("conformed", "semantic"):
        result = command(f"etl-{zone}", "run", cwd=folder, env=env)
        assert result.returncode == 0, f"etl-{zone} run exited {result.returncode}:\n{result.stdout[-3000:]}"
    check = command("etl", "status", "--check", "--json", cwd=folder, env=env)
    assert check.returncode == 0, check.stdout[-3000:]
    zones = json.loads(check.stdout)["zones"]
    assert {zone: run["status"] for zone, run in zones.items()} == dict.fromkeys(
        ("staging", "conformed", "semantic"), "succeeded"
    )

    # Where everything landed: the data folder under the working folder, and nothing else anywhere.
    data = folder / "data"
    assert sorted(p.name for p in folder.iterdir()) == ["data"]
    assert (data / "postgres" / "PG_VERSION").is_file()
    for zone in ("conformed", "semantic"):
        assert (data / "dbt" / zone / "target" / "manifest.json").is_file()
        assert (data / "dbt" / zone / "target" / "etl_artefacts_key").is_file()
        assert (data / "dbt" / zone / "profiles" / "profiles.yml").is_file()
    assert any(p.name.startswith("watershed_") for p in (data / "exports").iterdir())
    strays = [p for p in ROOT.joinpath("services").rglob("data") if p.is_dir() and "dbt" in p.parts]
    strays += list(ROOT.joinpath("services").rglob(".etl"))
    assert not strays, f"data written beside the code: {strays}"
