"""Two domains in one warehouse: the demo's and a second team's (tests/domains/library), written
outside the platform's packages and found through ETL_DOMAINS. Each one's change rebuilds it alone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conformed_warehouse import Warehouse

from etl_shared import ConfigurationError, configured_domains, installed_domains

LIBRARY = Path(__file__).resolve().parents[1] / "domains" / "library"
BOOK_COLUMNS = ["shelf", "book_no", "title", "published", "price"]


def last_job(warehouse: Warehouse) -> dict[str, Any]:
    ((counts,),) = warehouse.rows(
        "select counts -> 'dbt_project' from ops.job_runs where zone = 'conformed' order by started_at desc limit 1"
    )
    return dict(counts)


def built_models(warehouse: Warehouse) -> set[str]:
    rows = warehouse.rows(
        "select unique_id from ops.dbt_node_results where resource_type = 'model' and job_id = ("
        " select job_id from ops.job_runs where zone = 'conformed' order by started_at desc limit 1)"
    )
    return {unique_id for (unique_id,) in rows}


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "domains" / "library"
    shutil.copytree(LIBRARY, folder)
    return folder


def test_a_second_domain_builds_beside_the_demo_and_a_change_rebuilds_it_alone(
    warehouse: Warehouse, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (commerce,) = [d for d in installed_domains() if d.name == "commerce"]
    monkeypatch.setenv("ETL_DOMAINS", f"{commerce.path}:{library}")
    warehouse.pull(
        "library",
        "books",
        BOOK_COLUMNS,
        [["A1 ", "1", "Dune", "1965-08-01", "9.99"], ["A1", "2", "Emma", "1815-12-23", "4.50"]],
    )
    assert warehouse.run() == 0
    first = last_job(warehouse)
    assert first["domains"] == "commerce_conformed,library_conformed"
    assert set(first["packages"]) == {"vars", "etl_platform", "commerce_conformed", "library_conformed"}
    # char(3) pads the shelf, numeric(15, 2) keeps the cents, dates two centuries back stay dates
    assert warehouse.rows(
        "select shelf, book_no, title, published::text, price::text from conformed.book order by book_no"
    ) == [("A1 ", 1, "Dune", "1965-08-01", "9.99"), ("A1 ", 2, "Emma", "1815-12-23", "4.50")]
    # the rules seed of each domain is its own table
    assert warehouse.rows("select count(*) from conformed.library_conformed_dq_rules") == [(2,)]
    assert warehouse.rows("select count(*) from conformed.commerce_conformed_dq_rules")[0][0] > 10

    # A new pull of the library: only its entity is built; a deleted book (absent from the full
    # pull) is closed in the history.
    warehouse.pull("library", "books", BOOK_COLUMNS, [["A1", "1", "Dune", "1965-08-01", "10.99"]])
    assert warehouse.run() == 0
    job = last_job(warehouse)
    assert job["built"].startswith("new pulls of library.books; nothing new for ")
    models = built_models(warehouse)
    assert "model.library_conformed.book_history" in models
    assert "model.commerce_conformed.customer_history" not in models
    assert warehouse.rows("select book_no, price::text, is_deleted from conformed.book order by book_no") == [
        (1, "10.99", False),
        (2, "4.50", True),
    ]

    # The team edits its model: its whole package is built again, the demo's is not.
    book = library / "conformed" / "models" / "book.sql"
    book.write_text(book.read_text() + "\n-- reviewed\n")
    assert warehouse.run() == 0
    job = last_job(warehouse)
    assert job["built"].endswith("; every model of library_conformed: new, or changed since the previous run")
    assert "package:library_conformed+" in job["select"]
    models = built_models(warehouse)
    assert {"model.library_conformed.validated_book", "model.library_conformed.book"} <= models
    assert not {m for m in models if m.startswith("model.commerce_conformed.")} - {
        "model.commerce_conformed.fx_rate"  # declared to run every time
    }
    assert job["packages"]["commerce_conformed"] == first["packages"]["commerce_conformed"]

    # One job per domain: the library's own job compares with its own last run, and leaves the
    # demo's pulls to the demo's job.
    monkeypatch.setenv("ETL_DOMAINS", str(library))
    warehouse.pull("oltp", "things", ["id"], [[1]])
    assert warehouse.run() == 0
    job = last_job(warehouse)
    assert job["domains"] == "library_conformed"
    assert job["built"].startswith("everything: first run of the zone with the domains library_conformed")
    warehouse.pull("library", "books", BOOK_COLUMNS, [["A1", "1", "Dune", "1965-08-01", "11.99"]])
    assert warehouse.run() == 0
    job = last_job(warehouse)
    assert job["built"] == "new pulls of library.books; nothing new for -"
    ((unconsumed,),) = warehouse.rows(
        "select counts -> 'unconsumed_pulls' from ops.job_runs where zone = 'conformed'"
        " order by started_at desc limit 1"
    )
    assert unconsumed is None  # oltp.things is the demo domain's source, not this job's


def test_two_domains_with_a_model_of_the_same_name_are_refused_by_name(
    warehouse: Warehouse, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    (commerce,) = [d for d in installed_domains() if d.name == "commerce"]
    (library / "conformed" / "models" / "customer.sql").write_text("select 1 as id\n")
    monkeypatch.setenv("ETL_DOMAINS", f"{commerce.path}:{library}")
    assert warehouse.run() != 0
    out = capsys.readouterr()
    assert "customer" in out.out + out.err


def test_domain_settings_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not a folder"):
        configured_domains(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="not a domain folder"):
        configured_domains(str(tmp_path / "empty"))
    for name in ("a", "b"):
        (tmp_path / name / "library").mkdir(parents=True)
        (tmp_path / name / "library" / "sources.yml").write_text("sources: []\n")
    with pytest.raises(ConfigurationError, match="two domain folders are named library"):
        configured_domains(f"{tmp_path / 'a' / 'library'}:{tmp_path / 'b' / 'library'}")
    assert [d.name for d in configured_domains(str(LIBRARY))] == ["library"]
