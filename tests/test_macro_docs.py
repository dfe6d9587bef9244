"""docs/macros.md documents the platform's dbt macros: every macro and generic test of the
``etl_platform`` package and of the root overrides is documented (or listed as internal) with the
signature its file declares, and every example of the page compiles, with ``dbt compile --inline``,
in the real assembled project of its zone, to SQL holding what the page says it holds.

The convention of the examples is described at the top of docs/macros.md. The conformed examples
compile after one conformed run on an empty warehouse, so that the models they ref exist (empty).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformed_warehouse import Warehouse

from etl_shared import DbtProject, assemble_zone_project, configured_domains
from etl_shared._domains import platform_dir, root_macros_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "macros.md"
ZONES = ("conformed", "semantic")
#: The run values every example compiles with (docs/macros.md says so).
RUN_VALUES = {
    "run_id": "docs-example",
    "job_id": "00000000-0000-0000-0000-0000000000d0",
    "job_started_at": "2026-05-04T06:00:00+00:00",
}
#: The parameters of a generic test that dbt fills in itself.
IMPLICIT_TEST_PARAMETERS = ("model", "column_name")

_DEFINITION = re.compile(r"\{%-?\s*(macro|test)\s+(\w+)\s*\(([^)]*)\)")
_HEADING = re.compile(r"^### `(\w+)\(([^)`]*)\)`", re.MULTILINE)
_INTERNAL = re.compile(r"^- `(\w+)\(([^)`]*)\)`", re.MULTILINE)
#: an example's comment: at the start of a line, up to the first "-->"
_EXAMPLE_COMMENT = re.compile(r"^<!--\s*example\b((?:(?!-->).)*)-->", re.DOTALL | re.MULTILINE)
_EXAMPLE = re.compile(
    _EXAMPLE_COMMENT.pattern + r"[ \t]*\n```(sql|yaml)\n(.*?)^```", re.DOTALL | re.MULTILINE
)


@dataclass(frozen=True)
class Definition:
    kind: str  # "macro" or "test"
    name: str
    parameters: tuple[str, ...]
    path: Path

    @property
    def documented_parameters(self) -> tuple[str, ...]:
        """The signature the page shows: a test's without the parameters dbt fills in."""
        if self.kind == "test":
            return tuple(p for p in self.parameters if _parameter_name(p) not in IMPLICIT_TEST_PARAMETERS)
        return self.parameters


@dataclass
class Example:
    line: int
    language: str
    body: str
    zone: str = ""
    expect: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    error: str | None = None
    run_values: dict[str, str] = field(default_factory=dict)
    covers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        called = re.search(r"etl_platform\.(\w+)", self.body) or re.search(
            r"\{\{\s*(?!config\b)(\w+)\(", self.body
        )
        return f"line{self.line}-{self.zone}-{called.group(1) if called else self.language}"


def _parameters(text: str) -> tuple[str, ...]:
    return tuple(re.sub(r"\s+", "", p) for p in text.split(",") if p.strip())


def _parameter_name(parameter: str) -> str:
    return parameter.split("=")[0]


def definitions() -> dict[str, Definition]:
    """Every macro and generic test of the platform package and of the root overrides, by name."""
    found: dict[str, Definition] = {}
    files = sorted((platform_dir() / "macros").glob("*.sql")) + sorted(root_macros_dir().glob("*.sql"))
    for path in files:
        for kind, name, parameters in _DEFINITION.findall(path.read_text(encoding="utf-8")):
            assert name not in found, f"{name} is defined twice ({found[name].path}, {path})"
            found[name] = Definition(kind, name, _parameters(parameters), path)
    return found


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _internal_section(text: str) -> str:
    match = re.search(r"^## Internal helpers\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, "docs/macros.md has no '## Internal helpers' section"
    return match.group(1)


def documented(text: str) -> dict[str, tuple[str, ...]]:
    """{macro: parameters} of the page's headings."""
    return {name: _parameters(parameters) for name, parameters in _HEADING.findall(text)}


def internal(text: str) -> dict[str, tuple[str, ...]]:
    return {name: _parameters(parameters) for name, parameters in _INTERNAL.findall(_internal_section(text))}


def examples(text: str) -> list[Example]:
    found = []
    for match in _EXAMPLE.finditer(text):
        example = Example(
            line=text[: match.start()].count("\n") + 1, language=match.group(2), body=match.group(3)
        )
        for word in shlex.split(match.group(1)):
            key, _, value = word.partition("=")
            if key == "zone":
                example.zone = value
            elif key in {"expect", "absent", "covers"}:
                getattr(example, key).append(value)
            elif key == "error":
                example.error = value
            elif key.startswith("run:"):
                example.run_values[key.removeprefix("run:")] = value
            else:
                raise AssertionError(f"docs/macros.md line {example.line}: unknown example word {word!r}")
        found.append(example)
    return found


EXAMPLES = examples(_doc())


# -- the page covers every macro ------------------------------------------------------------------


def test_every_macro_is_documented_or_listed_as_internal() -> None:
    text = _doc()
    defined = definitions()
    headings, helpers = documented(text), internal(text)
    assert not set(headings) & set(helpers), "documented and listed as internal"
    missing = sorted(set(defined) - set(headings) - set(helpers))
    assert not missing, f"macros neither documented in docs/macros.md nor listed as internal: {missing}"
    unknown = sorted((set(headings) | set(helpers)) - set(defined))
    assert not unknown, f"docs/macros.md names macros that do not exist: {unknown}"
    wrong = {
        name: {"page": shown, "macro": defined[name].documented_parameters}
        for name, shown in {**headings, **helpers}.items()
        if shown != defined[name].documented_parameters
    }
    assert not wrong, f"signatures in docs/macros.md differ from the macro files: {wrong}"


def test_every_documented_macro_has_an_example() -> None:
    text = _doc()
    without = []
    for name in documented(text):
        if not any(
            f"etl_platform.{name}" in e.body or f"{name}(" in e.body or name in e.covers for e in EXAMPLES
        ):
            without.append(name)
    assert not without, f"documented macros without an example: {without}"


def test_every_example_comment_marks_a_block() -> None:
    text = _doc()
    assert len(_EXAMPLE_COMMENT.findall(text)) == len(EXAMPLES), (
        "an <!-- example ... --> comment is not directly followed by a ```sql or ```yaml block"
    )
    assert len(EXAMPLES) >= 40
    for example in EXAMPLES:
        assert example.zone in ZONES, f"line {example.line}: zone= must be one of {ZONES}"
        assert example.expect or example.error or example.language == "sql", example.id


# -- every example compiles -----------------------------------------------------------------------


class Zones:
    """The assembled projects of both zones, on a warehouse after one conformed run."""

    def __init__(self, warehouse: Warehouse, folder: Path) -> None:
        self.url = warehouse.url
        self.projects: dict[str, DbtProject] = {}
        for zone in ZONES:
            work_dir = folder / zone
            assemble_zone_project(zone, configured_domains(), work_dir / "project")
            self.projects[zone] = DbtProject(
                work_dir / "project", profile=zone, schema=zone, work_dir=work_dir
            )

    def compile(self, zone: str, sql: str, run_values: dict[str, str]) -> tuple[str | None, str]:
        """(compiled SQL or None, dbt's messages)."""
        result = self.projects[zone].invoke(
            "compile", self.url, args=["--inline", sql], run_values={**RUN_VALUES, **run_values}
        )
        messages = []
        seen: set[int] = set()
        exception = result.exception
        while exception is not None and id(exception) not in seen:
            seen.add(id(exception))
            messages.append(str(exception))
            exception = exception.__cause__ or exception.__context__
        results = list(getattr(result.result, "results", None) or [])
        messages += [str(r.message) for r in results if getattr(r, "message", None)]
        compiled = results[0].node.compiled_code if result.success and results else None
        return compiled, "\n".join(messages)


@pytest.fixture(scope="module")
def zones(db_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zones]:
    from etl_shared._logging import _context

    folder = tmp_path_factory.mktemp("macro_docs")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("ETL_PUSHGATEWAY_URL", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    token = _context.set({})
    try:
        warehouse = Warehouse(db_server.create_database("docs"), folder / "data", monkeypatch)
        assert warehouse.run() == 0, "the conformed run on an empty warehouse failed"
    finally:
        # the job's log handler and context belong to that run only
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        _context.reset(token)
    yield Zones(warehouse, folder)
    monkeypatch.undo()


def _literal(value: Any) -> str:
    """A YAML value as a Jinja literal."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def yaml_tests(example: Example) -> list[tuple[str, str]]:
    """(label, Jinja SQL) of each platform test an example's YAML declares: the test's macro called
    as dbt calls it, on the model or source it is attached to."""
    defined = definitions()
    document = yaml.safe_load(example.body)
    found: list[tuple[str, str]] = []

    def collect(owner: str, column: str | None, tests: list[Any]) -> None:
        for entry in tests or []:
            assert isinstance(entry, dict) and len(entry) == 1, f"line {example.line}: {entry!r}"
            ((qualified, spec),) = entry.items()
            if not qualified.startswith("etl_platform."):
                continue
            name = qualified.removeprefix("etl_platform.")
            assert name in defined and defined[name].kind == "test", f"line {example.line}: no test {name}"
            spec = spec or {}
            arguments = spec.get("arguments") or {}
            parameters = [_parameter_name(p) for p in defined[name].documented_parameters]
            required = [_parameter_name(p) for p in defined[name].documented_parameters if "=" not in p]
            unknown = sorted(set(arguments) - set(parameters))
            assert not unknown, f"line {example.line}: {name} has no parameters {unknown}"
            missing = sorted(set(required) - set(arguments))
            assert not missing, f"line {example.line}: {name} needs {missing}"
            where = (spec.get("config") or {}).get("where")
            model = f"get_where_subquery({owner})" if where else owner
            call = [f"model={model}"]
            if column is not None:
                call.append(f"column_name={_literal(column)}")
            call += [f"{key}={_literal(value)}" for key, value in arguments.items()]
            sql = f"{{{{ config(where={_literal(where)}) }}}}\n" if where else ""
            sql += f"{{{{ etl_platform.test_{name}({', '.join(call)}) }}}}"
            found.append((f"{name} on {owner}", sql))

    def attached(owner: str, node: dict[str, Any]) -> None:
        collect(owner, None, node.get("data_tests"))
        for column in node.get("columns") or []:
            collect(owner, column["name"], column.get("data_tests"))

    for model in document.get("models") or []:
        attached(f"ref({_literal(model['name'])})", model)
    for source in document.get("sources") or []:
        for table in source.get("tables") or []:
            attached(f"source({_literal(source['name'])}, {_literal(table['name'])})", table)
    assert found, f"line {example.line}: the YAML example declares no etl_platform test"
    return found


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_compiles(zones: Zones, example: Example) -> None:
    where = f"docs/macros.md line {example.line}"
    units = yaml_tests(example) if example.language == "yaml" else [("sql", example.body)]
    compiled_parts = []
    for label, sql in units:
        compiled, messages = zones.compile(example.zone, sql, example.run_values)
        if example.error is not None:
            assert compiled is None, f"{where}: compiled, but the page says it fails:\n{compiled}"
            assert example.error in messages, f"{where}: failed otherwise than the page says:\n{messages}"
            continue
        assert compiled is not None, f"{where} ({label}) does not compile:\n{messages}"
        compiled_parts.append(compiled)
    compiled_sql = _normal("\n".join(compiled_parts))
    for text in example.expect:
        assert _normal(text) in compiled_sql, f"{where}: {text!r} not in the compiled SQL:\n{compiled_sql}"
    for text in example.absent:
        assert _normal(text) not in compiled_sql, f"{where}: {text!r} in the compiled SQL:\n{compiled_sql}"
