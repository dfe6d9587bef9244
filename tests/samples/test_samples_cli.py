"""``etl-samples generate``: options, environment, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from etl_samples.cli import main


@pytest.fixture(autouse=True)
def _no_etl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ETL_DATABASE_URL", "ETL_OLTP_DATABASE_URL", "ETL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.integration
def test_generate_with_options(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "generate",
            "--orders",
            "120",
            "--seed",
            "5",
            "--data-dir",
            str(tmp_path),
            "--oltp-url",
            database_url,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "seed 5 (120 orders)" in out
    assert "order_lines" in out and "accounts.jsonl" in out
    assert str(tmp_path / "sources" / "fx" / "eurofxref-hist.csv") in out
    assert (tmp_path / "sources" / "crm" / "accounts.jsonl").is_file()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from oltp.orders").fetchone() == (120,)


@pytest.mark.integration
def test_generate_from_the_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ETL_OLTP_DATABASE_URL", database_url)
    monkeypatch.setenv(
        "ETL_DATABASE_URL", "postgresql://warehouse.invalid/etl"
    )  # fine: the OLTP URL is given
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path / "env-data"))
    assert main(["generate", "--orders", "60"]) == 0
    assert (tmp_path / "env-data" / "sources" / "web_events").is_dir()
    assert "60 orders" in capsys.readouterr().out


def test_external_warehouse_requires_an_oltp_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", "postgresql://warehouse.invalid/etl")
    assert main(["generate", "--data-dir", str(tmp_path)]) == 2
    assert "ETL_OLTP_DATABASE_URL" in caplog.text
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["generate", "--orders", "0"],
        ["generate", "--orders", "many"],
        ["generate", "--unknown"],
        ["explode"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: etl-samples" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--help"]) == 0
    assert "--oltp-url" in capsys.readouterr().out


def test_unreachable_database_exits_5(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/oltp?connect_timeout=2"
    assert main(["generate", "--orders", "10", "--data-dir", str(tmp_path), "--oltp-url", url]) == 5
    assert not (tmp_path / "sources").exists()  # the database comes first: nothing written


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etl_samples", "generate", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "--orders" in result.stdout
