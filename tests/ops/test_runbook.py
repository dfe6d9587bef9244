"""Every command in docs/runbook.md works as documented: each `etl…` command (fenced or inline) parses
with the real command-line parsers, and the runbook is then walked against a real warehouse and source
database, running each command in-process and checking its exit code; its SQL runs too."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ops_support import rows

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
PROGRAMS = ("etl", "etl-staging", "etl-conformed", "etl-semantic")
#: Commands the walk does not run here, and the tests that run them.
RUN_ELSEWHERE = {
    "etl run": "tests/test_e2e_pipeline.py",
    "etl-conformed run": "tests/conformed (every test runs the zone)",
    "etl-conformed run --all": "tests/conformed/test_conformed_selection.py",
    "etl-conformed run --select validated_customer+": "tests/conformed/test_conformed_selection.py",
    "etl-semantic run": "tests/semantic/test_semantic_zone.py",
    "etl-semantic run --full-refresh": "tests/semantic/test_semantic_zone.py (a sequence of runs, then a full build)",
    "etl-staging run --source crm --entity accounts": "tests/staging/test_staging_demo_apis.py (the sample APIs)",
}
_FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def runbook_blocks() -> tuple[list[tuple[str, str]], str]:
    """(language, body) of each fenced block, and the text outside them."""
    text = RUNBOOK.read_text(encoding="utf-8")
    blocks = [(m.group(2), m.group(3)) for m in _FENCE.finditer(text)]
    return blocks, _FENCE.sub("", text)


def runbook_commands() -> list[str]:
    """Every etl command of the runbook, in document order (fenced shell lines and inline code)."""
    text = RUNBOOK.read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    for match in _FENCE.finditer(text):
        if match.group(2) in {"sh", "bash", "shell"}:
            for line in match.group(3).splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append((match.start(), line))
    outside = _FENCE.sub(lambda m: " " * len(m.group(0)), text)
    for match in re.finditer(r"`([^`]+)`", outside):
        code = " ".join(match.group(1).split())
        if code.split(" ")[0] in PROGRAMS:
            found.append((match.start(), code))
    return [command for _, command in sorted(found, key=lambda item: item[0])]


def split_command(command: str) -> tuple[dict[str, str], str, list[str]]:
    """(environment assignments, program, arguments)."""
    words = shlex.split(command)
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words[0], words[1:]


def parse(program: str, args: list[str]) -> argparse.Namespace:
    """Parse with the program's own parser (argparse exits 2 on a usage error)."""
    from etl_conformed.cli import skip_pull_parser
    from etl_pipeline.cli import _parser as etl_parser
    from etl_shared._dbt_zone import _parser as zone_parser
    from etl_staging.cli import _parser as staging_parser

    if program == "etl":
        return etl_parser().parse_args(args)
    if program == "etl-staging":
        return staging_parser().parse_args(args)
    if program == "etl-conformed" and args[:1] == ["skip-pull"]:
        return skip_pull_parser().parse_args(args[1:])
    if program in {"etl-conformed", "etl-semantic"}:
        return zone_parser(program.removeprefix("etl-"), "").parse_args(args)
    raise AssertionError(f"unknown program {program}")


def test_the_runbook_documents_the_operator_commands() -> None:
    commands = runbook_commands()
    subcommands = {" ".join([split_command(c)[1], *split_command(c)[2][:1]]) for c in commands}
    assert {
        "etl status",
        "etl history",
        "etl lineage",
        "etl-staging run",
        "etl-staging reset",
        "etl-staging validate",
        "etl-conformed run",
        "etl-conformed skip-pull",
        "etl-semantic run",
    } <= subcommands
    text = RUNBOOK.read_text(encoding="utf-8")
    for heading in (
        "## A job failed",
        "## Rerun a zone",
        "## Backfill a date range",
        "## Reset a source entity",
        "## Read the quarantine",
        "## Rotate a secret",
        "## What changed, and restoring after a bad load",
    ):
        assert heading in text
    for code in ("**1**", "**2**", "**3**", "**4**", "**5**", "**143**"):
        assert code in text


@pytest.mark.parametrize("command", runbook_commands())
def test_every_runbook_command_parses(command: str) -> None:
    _, program, args = split_command(command)
    assert program in PROGRAMS
    try:
        parse(program, args)
    except SystemExit as exc:  # argparse's usage error
        pytest.fail(f"{command!r} does not parse (exit {exc.code})")


def _source_database(db_server: Any) -> str:
    url: str = db_server.create_database("oltp")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema oltp")
        # the customers' columns as the demo's sources file declares them (contract: strict)
        conn.execute(
            "create table oltp.customers (customer_id bigint primary key, email text, first_name text,"
            " last_name text, phone text, country text, created_at timestamptz not null,"
            " updated_at timestamptz not null)"
        )
        conn.execute("create table oltp.products (product_id integer primary key, name text)")
        conn.execute(
            "insert into oltp.customers values"
            " (1, 'ann@example.com', 'Ann', 'A', null, 'DE', '2026-10-01T00:00Z', '2026-10-01T00:00Z'),"
            " (2, 'bob@example.com', 'Bob', 'B', null, 'FR', '2026-10-01T00:00Z', '2026-10-01T00:00Z')"
        )
        conn.execute("insert into oltp.products values (1, 'Lamp')")
        conn.execute(
            "create table oltp.orders (order_id integer primary key, updated_at timestamptz not null)"
        )
        conn.execute(
            "insert into oltp.orders select i, timestamptz '2026-10-28 00:00+00' + i * interval '1 day'"
            " from generate_series(1, 20) as i"
        )
        conn.execute(
            "create table oltp.order_lines (order_id integer, line_number integer, updated_at timestamptz,"
            " primary key (order_id, line_number))"
        )
    return url


RUN_ID = "20261122T003512Z-4be1c7"


@pytest.mark.integration
def test_walk_the_runbook(
    database_url: str,
    db_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run the runbook's commands in order on the demo sources file (the OLTP source on a real
    database): each must end with the exit code the runbook says."""
    import io

    from etl_conformed.cli import main as conformed_main
    from etl_pipeline.cli import main as etl_main
    from etl_staging.cli import bundled_sources_file
    from etl_staging.cli import main as staging_main

    for name in ("ETL_SOURCES_FILE", "ETL_PUSHGATEWAY_URL", "ETL_OPENLINEAGE_URL", "ETL_OPENLINEAGE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_OLTP_DATABASE_URL", _source_database(db_server))
    monkeypatch.setenv("ETL_RUN_ID", RUN_ID)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, as under Control-M
    # The run the runbook's examples talk about: a staging job of the demo OLTP source.
    assert staging_main(["run", "--source", "oltp"]) == 0
    replacements = {"/etc/etl/sources.yml": str(bundled_sources_file())}
    mains = {"etl": etl_main, "etl-staging": staging_main, "etl-conformed": conformed_main}

    ran = []
    for command in runbook_commands():
        env, program, args = split_command(command)
        if shlex.join([program, *args]) in RUN_ELSEWHERE:
            continue
        args = [replacements.get(a, a) for a in args]
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = mains[program](args)
        _, err = capsys.readouterr()
        monkeypatch.setenv("ETL_RUN_ID", RUN_ID)
        if program == "etl" and args[:1] == ["status"] and "--check" in args:
            healthy = '"healthy": true' in _status_json(etl_main, args, capsys)
            expected = 0 if healthy else 1
        elif args[:1] == ["reset"] and "--yes" not in args:
            expected = 2  # not interactive: refused
            assert "refusing to reset without --yes" in err
        elif args[:1] == ["skip-pull"]:
            expected = 2  # no such pull in this database
            assert "no staging pull" in err or "badly formed" in err
        else:
            expected = 0
        assert code == expected, f"{command!r} exited {code}, expected {expected}: {err}"
        ran.append(command)

    assert "etl lineage 20261122T003512Z-4be1c7 --json" in ran
    assert any("--backfill-from" in c for c in ran)
    # What the walk did: the backfill left the watermark alone, the reset of web is audited.
    assert rows(database_url, "select count(*) from staging.pulls where backfill_from is not null") == [(1,)]
    assert rows(database_url, "select action, source from ops.operator_actions order by performed_at") == [
        ("backfill", "oltp"),
        ("reset", "web"),
    ]
    ((watermark,),) = rows(database_url, "select value from staging.watermarks where entity = 'orders'")
    assert watermark.startswith("2026-11-17")


def _status_json(etl_main: Any, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    extra = [a for a in args[1:] if a != "--check" and a != "--json"]
    etl_main(["status", "--json", *extra])
    return capsys.readouterr().out


@pytest.mark.integration
def test_the_runbook_sql_runs(database_url: str) -> None:
    from etl_shared import Database, apply_migrations

    apply_migrations(Database(database_url))
    blocks, _ = runbook_blocks()
    statements = [
        s.strip() for language, body in blocks if language == "sql" for s in body.split(";") if s.strip()
    ]
    assert len(statements) >= 4
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # raises on a wrong table or column


def test_the_runbook_links_resolve() -> None:
    """Links inside the runbook, and those of other files into it (alert rules, docs), name a section
    that exists (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens)."""
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    }
    links = set(re.findall(r"\]\(#([a-z0-9-]+)\)", text))
    root = RUNBOOK.parents[1]
    for path in [*root.glob("docs/*.md"), *root.glob("shared/**/*.yml"), *root.glob("**/alerts*.yml")]:
        if ".venv" not in path.parts:
            links |= set(re.findall(r"runbook\.md#([a-z0-9-]+)", path.read_text(encoding="utf-8")))
    assert links and links <= anchors, sorted(links - anchors)
