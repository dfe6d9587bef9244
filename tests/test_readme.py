"""The README's local commands, run as written, in document order, as a newcomer types them: in a fresh
working folder (not the repository root), with no ``ETL_*`` variable set, so that the default data
folder is the relative ``.etl``. Every shell block of README.md is either run here or listed in
:data:`NOT_RUN` with the reason; the summary ``make run`` prints must have the shape the README shows,
and everything the run writes must land under the working folder's ``.etl``.

The working folder holds symbolic links to the repository's top-level entries (``.venv`` included),
so that ``make run`` and ``.venv/bin/etl`` resolve exactly as in a clone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)

#: Shell blocks not run here, by their first command, and why.
NOT_RUN_BLOCKS = {
    "export ETL_DATABASE_URL=": "production example: a CockroachDB cluster and a sources file of its own",
    "docker compose up --build": "needs a Docker engine; tests/containers run the images and the compose file",
}
#: Single commands of a run block not run here, and why.
NOT_RUN_LINES = {"make test": "the command that runs this test"}


def readme_blocks() -> list[tuple[str, list[str]]]:
    """(language, command lines) of each fenced block, in document order; trailing comments dropped."""
    blocks = []
    for match in _FENCE.finditer(README.read_text(encoding="utf-8")):
        lines = []
        for line in match.group(2).splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                lines.append(command)
        blocks.append((match.group(1), lines))
    return blocks


def readme_commands() -> list[str]:
    """The shell commands the README tells a reader to run locally, in order."""
    commands = []
    for language, lines in readme_blocks():
        if language not in {"sh", "bash", "shell"} or not lines:
            continue
        if any(lines[0].startswith(prefix) for prefix in NOT_RUN_BLOCKS):
            continue
        commands += [line for line in lines if line not in NOT_RUN_LINES]
    return commands


def summary_example() -> list[str]:
    """The summary the README shows after "prints ... a summary like this"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("a summary like")
    match = _FENCE.search(text, start)
    assert match is not None and match.group(1) == "", "no example summary after 'a summary like'"
    return [line for line in match.group(2).splitlines() if line.strip()]


#: What may differ between the README's example summary and a run's, and the pattern it becomes.
_VARYING = [
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}"), r"\d{8}T\d{6}Z-[0-9a-f]{6}"),  # the run id
    (re.compile(r"\S*psql(?= )"), r"\S*psql"),  # where psql is installed
    (re.compile(r"/path/to/\.etl/postgres"), r"/\S+/\.etl/postgres"),  # the working folder
    (re.compile(r"\d+(?:\.\d+)?"), r"\d+(?:\.\d+)?"),  # counts and seconds
    (re.compile(r" +"), r" +"),  # column widths
]


def line_pattern(example: str) -> re.Pattern[str]:
    """A README example line as a pattern: run ids, numbers, paths and column widths may differ."""
    parts, position = [], 0
    while position < len(example):
        for token, replacement in _VARYING:
            match = token.match(example, position)
            if match:
                parts.append(replacement)
                position = match.end()
                break
        else:
            parts.append(re.escape(example[position]))
            position += 1
    return re.compile("^" + "".join(parts) + "$")


def newcomer_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A folder that looks like a clone of the repository, with no data folder yet."""
    venv = Path(sys.prefix)
    if venv != ROOT / ".venv" or not (venv / ".installed").is_file():
        pytest.skip(
            f"runs from the virtual environment `make install` makes ({ROOT / '.venv'}); this is {venv}"
        )
    folder = tmp_path / "clone"
    folder.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".etl", ".git"}:
            (folder / entry.name).symlink_to(entry)
    yield folder
    postgres = folder / ".etl" / "postgres"
    if postgres.is_dir():
        from etl_shared import EmbeddedPostgres

        EmbeddedPostgres(postgres).stop()


def test_example_lines_become_patterns() -> None:
    pattern = line_pattern("  staging    succeeded     238764 rows     3.9s, 9 pulls")
    assert pattern.match("  staging    succeeded        12 rows   103.0s, 10 pulls")
    assert not pattern.match("  staging    failed        12 rows   103.0s, 10 pulls")
    run = line_pattern("Run 20261122T015912Z-8348b2")
    assert run.match("Run 20270101T000000Z-abcdef") and not run.match("Run 2027")
    connect = line_pattern(
        "  connect: /usr/bin/psql 'postgresql://postgres:@/etl?host=/path/to/.etl/postgres'"
    )
    assert connect.match("  connect: psql 'postgresql://postgres:@/etl?host=/tmp/x/.etl/postgres'")
    assert not connect.match("  connect: psql 'postgresql://postgres:@/etl?host=/tmp/x/data/postgres'")


def test_the_readme_lists_its_commands() -> None:
    commands = readme_commands()
    assert commands[0] == "make run"
    assert ".venv/bin/etl status" in commands and ".venv/bin/etl status --json" in commands
    run_blocks = [lines[0] for language, lines in readme_blocks() if language == "sh" and lines]
    assert all(any(line.startswith(p) for line in run_blocks) for p in NOT_RUN_BLOCKS), (
        "a block NOT_RUN_BLOCKS names is no longer in the README"
    )


def test_readme_commands_as_a_newcomer(workspace: Path) -> None:
    repo_data = ROOT / ".etl"
    repo_data_before = repo_data.exists()
    env = newcomer_environment()
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    for command in readme_commands():
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", command], cwd=workspace, env=env, capture_output=True, text=True, timeout=900
        )
        print(f"{command}: exit {result.returncode} after {time.monotonic() - started:.1f}s")
        assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-4000:]}"
        outputs[command] = result

    # The summary has the README's shape, line for line.
    printed = outputs["make run"].stdout.splitlines()
    position = 0
    for example in summary_example():
        pattern = line_pattern(example)
        found = next((i for i in range(position, len(printed)) if pattern.match(printed[i])), None)
        assert found is not None, f"README line {example!r} not in the summary:\n" + "\n".join(printed[-20:])
        position = found + 1

    status = json.loads(outputs[".venv/bin/etl status --json"].stdout)
    assert {zone: run["status"] for zone, run in status["zones"].items()} == dict.fromkeys(
        ("staging", "conformed", "semantic"), "succeeded"
    )
    assert "Zones:" in outputs[".venv/bin/etl status"].stdout

    # Everything landed under the working folder's .etl, nothing beside the packages' dbt projects.
    data = workspace / ".etl"
    assert (data / "postgres" / "PG_VERSION").is_file()
    assert any((data / "sources" / "web_events").rglob("*.csv"))
    for zone in ("conformed", "semantic"):
        target = data / "dbt" / zone / "target"
        assert (target / "manifest.json").is_file(), f"no dbt manifest under {target}"
        assert (target / "etl_artefacts_key").is_file()
    exports = sorted(p.name for p in (data / "exports").iterdir())
    assert any(name.startswith("watershed_") for name in exports), exports
    strays = [p for p in (ROOT / "services").rglob(".etl")] + [p for p in (ROOT / "shared").rglob(".etl")]
    assert not strays, f"data written beside the code: {strays}"
    assert repo_data.exists() == repo_data_before, "the run wrote the repository's own .etl"
