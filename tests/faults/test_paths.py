"""File sources read only below the data folder and ETL_FILE_ROOTS: a path outside is refused with exit
2 when the sources file is loaded (a static path) or when the pull reads (a glob matching a symbolic
link that escapes), and nothing is committed, so no good pull is retained away."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from fault_support import run_entrypoint

SOURCES = """
sources:
  - name: web
    kind: file
    entities:
      - name: events
        files: [{path: "%s", format: csv}]
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    data = tmp_path / "data"
    (data / "drops").mkdir(parents=True)
    (data / "drops" / "events.csv").write_text("event_id,kind\n1,click\n2,view\n", encoding="utf-8")
    return {
        "ETL_DATABASE_URL": database_url,
        "ETL_DATA_DIR": str(data),
        "ETL_SOURCES_FILE": str(tmp_path / "sources.yml"),
        "ETL_SECRETS_DIR": str(tmp_path),
    }


def declare(env: dict[str, str], path: str) -> None:
    Path(env["ETL_SOURCES_FILE"]).write_text(SOURCES % path, encoding="utf-8")


def committed_files(url: str) -> list[list[str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select metadata -> 'files' from staging.pulls where status = 'committed' order by committed_at"
        ).fetchall()
    return [[f["path"] for f in files] for (files,) in rows]


@pytest.mark.parametrize("path", ["{data_dir}/../../../../etc/passwd", "/etc/passwd", "/etc/*"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_static_path_outside_the_roots_is_refused_when_loaded(
    env: dict[str, str], path: str, command: str
) -> None:
    declare(env, path)

    result = run_entrypoint("etl-staging", command, env=env)

    assert result.returncode == 2, result.stderr
    assert (
        f"sources file {env['ETL_SOURCES_FILE']}: source 'web' field entities.0.files.0.path (entity 'events'):"
        f" {path!r} is outside the folders file sources may read, the data folder {env['ETL_DATA_DIR']}"
    ) in result.stderr


def test_a_link_that_escapes_is_refused_when_read_and_the_good_pull_stays(env: dict[str, str]) -> None:
    declare(env, "{data_dir}/drops/*.csv")
    assert run_entrypoint("etl-staging", "run", env=env).returncode == 0
    good = committed_files(env["ETL_DATABASE_URL"])
    link = Path(env["ETL_DATA_DIR"]) / "drops" / "zz.csv"
    os.symlink("/etc/passwd", link)

    result = run_entrypoint("etl-staging", "run", env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{link} (resolved: /etc/passwd) is outside the folders file sources may read" in result.stdout
    assert committed_files(env["ETL_DATABASE_URL"]) == good  # nothing committed, nothing retained away
    with psycopg.connect(env["ETL_DATABASE_URL"], autocommit=True) as conn:
        payloads = conn.execute("select count(*) from staging.pull_payloads").fetchone()
        passwd = conn.execute(
            "select count(*) from staging.pull_batches where data::text like '%%root:%%'"
        ).fetchone()
    assert payloads is not None and passwd == (0,)


def test_a_folder_declared_in_file_roots_may_be_read(env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "landing"
    outside.mkdir()
    (outside / "e.csv").write_text("event_id\n7\n", encoding="utf-8")
    declare(env, f"{outside}/*.csv")

    refused = run_entrypoint("etl-staging", "validate", env=env)
    allowed = run_entrypoint("etl-staging", "run", env={**env, "ETL_FILE_ROOTS": f"/nonexistent:{outside}"})

    assert refused.returncode == 2 and "ETL_FILE_ROOTS adds more" in refused.stderr
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert committed_files(env["ETL_DATABASE_URL"]) == [[str(outside / "e.csv")]]
