"""Leftovers: a Watershed export killed mid-write (a real SIGKILL) leaves only its temporary files, never
a file under its final name; the next semantic job removes them at its start, logging name and size,
and writes files byte-identical to those of a run that was never interrupted."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from etl_semantic._watershed import export_watershed
from etl_semantic.cli import SemanticSettings, remove_stale_exports
from etl_shared import Database, apply_migrations, remove_stale_temporary_files

HOME = "https://shop.example.com"
ROWS = 100_000

#: A Watershed table of ROWS valid statements (web events viewing products), a second apart.
_FILL = f"""
create table semantic.watershed_statements as
select overlay(overlay(md5(i::text) placing '5' from 13) placing '8' from 17)::uuid::text as ws_statement_id,
    timestamptz '2024-03-01 00:00+00' + i * interval '1 second' as ws_timestamp,
    '{HOME}' as ws_actor_home_page, 'cust_' || (i % 977) as ws_actor_account,
    'http://id.tincanapi.com/verb/viewed' as ws_verb_id, 'viewed' as ws_verb_display,
    '{HOME}/products/' || (i % 313) as ws_object_id, 'http://activitystrea.ms/schema/1.0/product' as ws_object_type,
    'Product ' || (i % 313) as ws_object_name, null::numeric(14, 2) as ws_result_amount,
    null::text as ws_result_currency, 'web_event' as ws_source, 'e-' || i as ws_source_id
from generate_series(1, {ROWS}) as i
"""

EXPORTER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import psycopg

    from etl_semantic._watershed import export_watershed

    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        export_watershed(conn, Path(sys.argv[2]), "watershed_R1")
    """
)


@pytest.fixture
def warehouse(database_url: str) -> str:
    apply_migrations(Database(database_url))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_FILL)
    return database_url


def temporary_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir() if p.name.endswith(".etl-tmp")}


def kill_mid_write(url: str, folder: Path) -> dict[str, int]:
    """Start the export in its own process, SIGKILL it once its temporary CSV holds data, and return
    the temporary files it left."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", EXPORTER, url, str(folder)])
    try:
        while process.poll() is None:
            if any(size > 256 * 1024 for size in temporary_files(folder).values()):
                break
            time.sleep(0.05)
        assert process.poll() is None, "the export ended before it could be killed: make ROWS larger"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return temporary_files(folder)


def test_a_killed_export_leaves_no_final_file_and_the_next_job_cleans_up(
    warehouse: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exports = tmp_path / "data" / "exports"
    (exports).mkdir(parents=True)
    (exports / "notes.csv.tmp").write_text("not ours", encoding="utf-8")  # another tool's file stays
    (exports / ".report.csv.tmp").write_text("not ours either", encoding="utf-8")

    left = kill_mid_write(warehouse, exports)

    assert sorted(name.split(".")[1] for name in left) == ["watershed_R1"] * 3
    assert not [p for p in exports.iterdir() if p.name.startswith("watershed_R1")]  # nothing final
    assert sum(left.values()) > 256 * 1024

    settings = SemanticSettings(data_dir=tmp_path / "data", database_url=None)
    context = SimpleNamespace(settings=settings, counts={})
    with caplog.at_level(logging.WARNING, logger="etl_shared._files"):
        remove_stale_exports(context)  # type: ignore[arg-type]

    assert context.counts["removed_temporary_files"] == left
    for name, size in left.items():
        assert f"removed {name} ({size} bytes) from {exports}" in caplog.text
    assert sorted(p.name for p in exports.iterdir()) == [".report.csv.tmp", "notes.csv.tmp"]

    with psycopg.connect(warehouse, autocommit=True) as conn:
        rerun = export_watershed(conn, exports, "watershed_R1")
        clean = export_watershed(conn, tmp_path / "clean", "watershed_R1")
    for after, control in zip(rerun, clean, strict=True):
        assert after.path.read_bytes() == control.path.read_bytes()
        assert after.sha256 == control.sha256 and after.rows == control.rows
    assert temporary_files(exports) == {}


def test_only_the_jobs_own_temporary_names_are_removed(tmp_path: Path) -> None:
    names = {
        ".watershed_R1.csv.abcd1234.etl-tmp": True,
        ".commerce.qvs.k_9x0y1z.etl-tmp": True,
        ".watershed_R1.xapi.json.abcd1234.tmp": True,  # an earlier release's export
        ".watershed_R1.csv.abc.etl-tmp": False,  # not tempfile's 8 characters
        ".notes.txt.abcd1234.tmp": False,  # not an export's name
        "watershed_R1.csv": False,
        "x.etl-tmp": False,
    }
    for name in names:
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".a.csv.abcd1234.etl-tmp").write_text("x", encoding="utf-8")
    os.symlink("/etc/passwd", tmp_path / ".b.csv.abcd1234.etl-tmp")

    removed = remove_stale_temporary_files(tmp_path, earlier_suffixes=(".csv", ".json", ".qvs"))

    assert sorted(name for name, _ in removed) == sorted(name for name, ours in names.items() if ours)
    assert (tmp_path / "sub" / ".a.csv.abcd1234.etl-tmp").exists()
    assert (tmp_path / ".b.csv.abcd1234.etl-tmp").is_symlink()
