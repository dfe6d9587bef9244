"""Drop folders: a file already loaded (same checksum) is skipped; zip archives are read member by member."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import psycopg
import pytest

from etl_shared import SourceFatalError
from etl_staging import FileExtractor
from etl_staging._config import FileEntity
from etl_staging._extract import Batch
from etl_staging.cli import main

pytestmark = pytest.mark.integration

SOURCES = """
sources:
  - name: drops
    kind: file
    batch_size: 100
    entities:
      - name: events
        skip_loaded_files: true
        files: [{path: "{data_dir}/in/*.csv", format: csv}]
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "in").mkdir()
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    return tmp_path


def _pulls(url: str) -> list[tuple[str, int, dict]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select status, record_count, metadata from staging.pulls order by started_at"
        ).fetchall()


def test_a_file_already_loaded_is_skipped(env: Path, database_url: str) -> None:
    (env / "in" / "day1.csv").write_text("id,v\n1,a\n2,b\n")
    (env / "in" / "day2.csv").write_text("id,v\n3,c\n")
    assert main(["run"]) == 0
    (env / "in" / "day3.csv").write_text("id,v\n4,d\n5,e\n6,f\n")
    (env / "in" / "day1-copy.csv").write_text("id,v\n1,a\n2,b\n")  # same bytes as day1: skipped too
    assert main(["run"]) == 0

    pulls = _pulls(database_url)
    assert [(status, records) for status, records, _ in pulls] == [("committed", 3), ("committed", 3)]
    second = pulls[1][2]
    assert [Path(f["path"]).name for f in second["files"]] == ["day3.csv"]
    assert sorted(Path(p).name for p in second["skipped_files"]) == ["day1-copy.csv", "day1.csv", "day2.csv"]
    with psycopg.connect(database_url) as conn:
        loaded = conn.execute("select count(*) from staging.loaded_files").fetchone()
    assert loaded == (3,)


def test_a_failed_pull_marks_no_file_loaded(env: Path, database_url: str) -> None:
    (env / "in" / "good.csv").write_text("id,v\n1,a\n")
    (env / "in" / "bad.csv").write_text("id,v\n2\n")
    assert main(["run"]) == 3
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from staging.loaded_files").fetchone() == (0,)
    (env / "in" / "bad.csv").write_text("id,v\n2,b\n")
    assert main(["run"]) == 0
    committed = [p for p in _pulls(database_url) if p[0] == "committed"]
    assert [records for _, records, _ in committed] == [2]


def _entity(path: str, fmt: str = "csv", **extra: object) -> FileEntity:
    return FileEntity.model_validate({"name": "e", "files": [{"path": path, "format": fmt}], **extra})


def test_zip_members_are_read_in_order_with_their_names_in_errors(tmp_path: Path) -> None:
    archive = tmp_path / "drop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("b.csv", "id,v\n3,c\n")
        zf.writestr("a.csv", "id,v\n1,a\n2,b\n")
        zf.writestr("c.csv.gz", gzip.compress(b"id,v\n4,d\n"))
    extractor = FileExtractor(
        "s", _entity(str(archive), keep_payload=False), data_dir=tmp_path, batch_size=10
    )
    batches = [item for item in extractor.extract() if isinstance(item, Batch)]
    assert [row for batch in batches for row in batch.rows] == [
        ["1", "a"],
        ["2", "b"],
        ["3", "c"],
        ["4", "d"],
    ]
    assert extractor.loaded[0].path == str(archive)

    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("d.csv", "id,v\n5\n")
    extractor = FileExtractor(
        "s", _entity(str(archive), keep_payload=False), data_dir=tmp_path, batch_size=10
    )
    with pytest.raises(SourceFatalError, match=r"drop\.zip!d\.csv, line 2"):
        list(extractor.extract())


def test_a_corrupt_zip_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    extractor = FileExtractor("s", _entity(str(tmp_path / "broken.zip")), data_dir=tmp_path, batch_size=10)
    with pytest.raises(SourceFatalError, match="not a valid zip archive"):
        list(extractor.extract())


def test_without_skipping_every_run_reads_every_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("id\n1\n")
    extractor = FileExtractor(
        "s",
        _entity(str(tmp_path / "x.csv")),
        data_dir=tmp_path,
        batch_size=10,
        already_loaded=lambda _c: True,
    )
    assert [b.rows for b in extractor.extract() if isinstance(b, Batch)] == [[["1"]]]
