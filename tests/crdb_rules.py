"""Static check for the CockroachDB rules of DESIGN.md section 3.

PostgreSQL (the test database) accepts constructs that CockroachDB (the production database) rejects or
runs differently. ``test_crdb_rules.py`` runs :func:`check_tree` over the project's SQL files, dbt YAML,
SQL strings in Python and the compiled dbt SQL under ``<dbt project>/target/``, and fails on any
violation. Standard library only; no SQL parser, just careful masking and regular expressions.

How a SQL text is read
----------------------
1. Jinja first, as dbt does: ``{# ... #}`` comments are blanked; ``{{ ... }}`` and ``{% ... %}`` blocks are
   blanked from the SQL and checked on their own with the dbt configuration rules only
   ([incremental-strategy] and the ``materialized`` part of [view]).
2. Then SQL comments (``--`` and nested ``/* */``), string literal bodies (``'...'`` with ``''``,
   ``E'...'`` with backslash escapes) and dollar-quoted bodies (``$tag$ ... $tag$``) are blanked. The quotes
   and the ``$tag$`` delimiters stay, so a ``do $$`` block remains visible to [do-block].

Blanking replaces every character except newlines with a space, so offsets and line numbers stay those of
the original text. All matching is case-insensitive.

Rules (ids in brackets)
-----------------------
[merge]                 ``MERGE INTO``.
[incremental-strategy]  dbt ``incremental_strategy`` ``merge`` / ``microbatch`` / ``insert_overwrite``
                        (in a Jinja ``config()`` call or in YAML).
[view]                  ``materialized`` ``view`` / ``materialized_view`` (config or YAML) and
                        ``CREATE [OR REPLACE] [TEMP] [MATERIALIZED] VIEW``.
[serial]                ``serial``-family column types, ``CREATE SEQUENCE``, ``nextval/currval/setval(``,
                        ``GENERATED ... AS IDENTITY``.
[advisory-lock]         any ``pg_...advisory...`` function.
[integer-division]      ``/`` whose operands carry no explicit type (see :func:`_integer_divisions`).
[do-block]              anonymous ``DO`` blocks.
[extension]             ``CREATE EXTENSION``.
[system-column]         ``ctid``, ``xmin``, ``xmax`` (PostgreSQL forbids user columns with these names, so
                        any use is the system column) and ``oid`` as ``x.oid`` or a selected column.
[listen-notify]         ``LISTEN`` / ``UNLISTEN`` / ``NOTIFY`` statements and ``pg_notify(``.
[temp-table-on-commit]  ``ON COMMIT DROP``.
[null-order]            a window's ``ORDER BY`` term without ``NULLS FIRST``/``NULLS LAST`` (CockroachDB
                        sorts NULLs first, PostgreSQL last; see :func:`_window_orderings`).
[waiver]                a ``crdb-ok`` waiver without a reason.

Waivers
-------
A comment ``crdb-ok: <reason>`` exempts its own line. In SQL it also exempts a whole statement when it sits
on the statement's first line or on a comment line just above it (between the previous ``;`` and the
statement). In Python, a ``# crdb-ok: <reason>`` comment on the string's lines or on the first line of the
Python statement holding the string exempts that string. In YAML it exempts its line. A bare ``crdb-ok``
is a [waiver] violation and waives nothing.
"""

from __future__ import annotations

import ast
import bisect
import io
import os
import re
import tokenize
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Violation", "check_python", "check_sql", "check_tree", "check_yaml"]

SKIP_DIRS = frozenset(
    {".venv", "venv", "node_modules", ".git", "__pycache__", "dbt_packages", "logs"}
    | {".mypy_cache", ".ruff_cache", ".pytest_cache", ".tox"}
)
"""Directory names never entered by :func:`check_tree`. ``target`` is deliberately absent."""

_TESTS_DIR = Path(__file__).resolve().parent
_FLAGS = re.IGNORECASE


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, which rule, why, and the offending source line (stripped)."""

    path: str
    line: int
    rule: str
    message: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}: {self.text}"


# --------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Rule:
    """A rule found by a regex (hit at the group ``hit`` if present, else the match) or by a function."""

    rule: str
    message: str
    pattern: re.Pattern[str] | None = None
    finder: Callable[[str], Iterable[int]] | None = None

    def offsets(self, text: str) -> Iterable[int]:
        if self.finder is not None:
            return self.finder(text)
        assert self.pattern is not None
        group = "hit" if "hit" in self.pattern.groupindex else 0
        return (m.start(group) for m in self.pattern.finditer(text))


def _rules(rule: str, message: str, *patterns: str) -> tuple[_Rule, ...]:
    return tuple(_Rule(rule, message, re.compile(p, _FLAGS)) for p in patterns)


_MSG_VIEW = "views over dbt table models break the next run on CockroachDB; use table/incremental/ephemeral"
_MSG_WAIVER = "a waiver needs a reason: write 'crdb-ok: <reason>'"
_IDENT = r'(?:"[^"\n]*"|[a-z_]\w*)'

KEYWORD_RULES: tuple[_Rule, ...] = (
    *_rules(
        "merge", "MERGE is not supported by CockroachDB; use INSERT ... ON CONFLICT", r"\bmerge\s+into\b"
    ),
    *_rules(
        "serial",
        "serial/sequence/identity keys are not sequential on CockroachDB; use a hash or UUID key",
        # serial as a column type: "(name serial", ", name serial", "add [column] name serial", "type serial"
        rf"(?:(?:[(,]|\badd\s+(?:column\s+)?(?:if\s+not\s+exists\s+)?)\s*{_IDENT}\s+|\btype\s+)"
        r"(?P<hit>(?:small|big)?serial[248]?)\b",
        r"\bcreate\s+(?:temp(?:orary)?\s+)?sequence\b",
        r"\b(?:nextval|currval|setval)\s*\(",
        r"\bgenerated\s+(?:always|by\s+default)\s+as\s+identity\b",
    ),
    *_rules(
        "advisory-lock",
        "advisory locks are no-ops on CockroachDB; lock a row with SELECT ... FOR UPDATE",
        r"\bpg_\w*?advisory",
    ),
    *_rules(
        "view",
        _MSG_VIEW,
        r"\bcreate\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:recursive\s+)?(?:materialized\s+)?view\b",
    ),
    *_rules(
        "do-block",
        "anonymous DO blocks are not supported on CockroachDB; use plain SQL or Python",
        r"\bdo\s+(?:language\s+\w+\s+)?(?:\$\w*\$|')",
    ),
    *_rules("extension", "CREATE EXTENSION is not supported by CockroachDB", r"\bcreate\s+extension\b"),
    *_rules(
        "listen-notify",
        "LISTEN/NOTIFY is not supported by CockroachDB",
        r"(?:\A|;)\s*(?P<hit>(?:un)?listen|notify)\s+[a-z_\"*]",
        r"\bpg_notify\s*\(",
    ),
    *_rules(
        "temp-table-on-commit",
        "ON COMMIT DROP is not supported by CockroachDB",
        r"\bon\s+commit\s+drop\b",
    ),
)
"""Rules for SQL files and for SQL strings in Python."""

CONFIG_RULES: tuple[_Rule, ...] = (
    *_rules(
        "incremental-strategy",
        "this dbt incremental strategy needs MERGE; use delete+insert or append",
        r"(?P<hit>incremental_strategy)['\"]?\s*[:=]\s*['\"]?(?:merge|microbatch|insert_overwrite)\b",
    ),
    *_rules("view", _MSG_VIEW, r"(?P<hit>materialized)['\"]?\s*[:=]\s*['\"]?(?:materialized_)?view\b"),
)
"""dbt configuration rules: applied to Jinja blocks of SQL files and to YAML files."""

# ---------------------------------------------------------------------------- integer division

_TOKEN = re.compile(r"(?:\d+\.\d*|\.\d+)(?:e[+-]?\d+)?|\"[^\"]*\"|\$\w*\$|::|\|\||[<>!=]=?|\w+|\S", _FLAGS)
_DECIMAL_LITERAL = re.compile(r"(?:\d+\.\d*|\.\d+)(?:e[+-]?\d+)?", _FLAGS)
_TYPED = re.compile(
    # Only casts to an exact or floating type make "/" portable: an integer cast still truncates on
    # PostgreSQL while CockroachDB returns a decimal.
    r"(?:::|\bas)\s*(?:numeric|decimal|float[48]?|real|double\s+precision)\b"
    r"|\binterval\b",
    _FLAGS,
)
_OPENERS = frozenset({"(", "case"})
_CLOSERS = frozenset({")", "end"})
# Clause keywords that end an operand when met outside brackets.
_BOUNDARY_WORDS = frozenset(
    """
    select from where and or not then else when as on by having in is like ilike similar between set
    values returning limit offset using join into union intersect except all any some distinct desc asc
    nulls do update insert delete with lateral exists order partition escape
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_BOUNDARY_SYMBOLS = frozenset({",", ";", "=", "<", ">", "<=", ">=", "<>", "!=", "+", "-", "||", "[", "]"})


def _operand(tokens: list[str], index: int, step: int) -> list[str]:
    """Tokens of one operand of the ``/`` at ``index``, walking left (step -1) or right (step +1).

    The walk stops, outside brackets, at a comma, ``;``, a comparison, ``+``/``-``/``||`` or a clause
    keyword, or at an unbalanced bracket. ``( )`` and ``case ... end`` count as brackets.
    """
    opens, closes = (_OPENERS, _CLOSERS) if step > 0 else (_CLOSERS, _OPENERS)
    depth, found = 0, []
    index += step
    while 0 <= index < len(tokens):
        token = tokens[index].lower()
        if token in closes:
            if depth == 0:
                break
            depth -= 1
        elif token in opens:
            depth += 1
        elif depth == 0 and (token in _BOUNDARY_WORDS or token in _BOUNDARY_SYMBOLS):
            break
        found.append(token)
        index += step
    return found if step > 0 else found[::-1]


def _is_typed(operand: list[str]) -> bool:
    """An explicit cast, a decimal literal (``100.0``) or an interval makes the division's type clear."""
    return bool(_TYPED.search(" ".join(operand))) or any(_DECIMAL_LITERAL.fullmatch(t) for t in operand)


def _integer_divisions(code: str) -> Iterator[int]:
    """Offsets of ``/`` operators neither of whose operands is explicitly typed.

    A heuristic on the masked text (strings, comments and Jinja already blanked): the operands are the
    token runs around the ``/`` found by :func:`_operand`, and the division passes when either operand
    contains ``::numeric``, ``::decimal``, ``::float[48]``, ``::real``, ``::double precision``,
    ``::int[248]``, ``::integer``, ``::bigint``, ``::smallint``, the same types in ``cast(... as ...)``,
    a decimal literal or ``interval``. It is skipped when an operand is empty (it was Jinja, say): the
    compiled SQL in ``target/`` is checked instead.
    """
    matches = list(_TOKEN.finditer(code))
    tokens = [m.group() for m in matches]
    for index, token in enumerate(tokens):
        if token != "/":
            continue
        left, right = _operand(tokens, index, -1), _operand(tokens, index, +1)
        if left and right and not (_is_typed(left) or _is_typed(right)):
            yield matches[index].start()


_WINDOW_OPEN = re.compile(r"\bover\s*\(|\bwindow\s+\w+\s+as\s*\(|,\s*\w+\s+as\s*\(", _FLAGS)
_WINDOW_ORDER = re.compile(r"\border\s+by\b", _FLAGS)
_FRAME = re.compile(r"\b(?:rows|range|groups)\b", _FLAGS)
_NULLS = re.compile(r"\bnulls\s+(?:first|last)\b", _FLAGS)


def _window_orderings(code: str) -> Iterator[int]:
    """Offsets of window ``ORDER BY`` terms (in ``over (...)`` or a ``window w as (...)`` clause) that
    do not say ``NULLS FIRST`` or ``NULLS LAST``.

    CockroachDB sorts NULLs first in ascending order, PostgreSQL last: a rank, row_number or lag over a
    nullable column picks other rows on the two. Every term of a window's ordering states it (on a
    column that is never null it costs nothing). A term that is only Jinja (blank here) is checked in
    the compiled SQL instead."""
    for opening in _WINDOW_OPEN.finditer(code):
        if opening.group().startswith(",") and not re.search(r"\bwindow\b", code[: opening.start()], _FLAGS):
            continue  # ", name as (" outside a WINDOW clause is a CTE
        start = opening.end()
        depth, end = 1, start
        while end < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            end += 1
        body = code[start : end - 1]
        order = _WINDOW_ORDER.search(body)
        if order is None:
            continue
        terms_text = body[order.end() :]
        frame = _FRAME.search(terms_text)
        if frame is not None:
            terms_text = terms_text[: frame.start()]
        depth, term_start = 0, 0
        terms = []
        for index, char in enumerate(terms_text + ","):
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "," and depth == 0:
                terms.append((term_start, terms_text[term_start:index]))
                term_start = index + 1
        for offset, term in terms:
            if term.strip() and not _NULLS.search(term):
                yield start + order.end() + offset + (len(term) - len(term.lstrip()))


SQL_ONLY_RULES: tuple[_Rule, ...] = (
    *_rules(
        "system-column",
        "PostgreSQL system columns do not exist on CockroachDB",
        r"\b(?:ctid|xmin|xmax)\b",
        r"\.\s*oid\b",
        r"(?:\bselect\s+(?:distinct\s+)?|,)\s*(?P<hit>oid)\s*(?:,|\bfrom\b|\bas\b)",
    ),
    _Rule(
        "integer-division",
        "'/' on integers truncates on PostgreSQL but gives a decimal on CockroachDB; cast an operand",
        finder=_integer_divisions,
    ),
    _Rule(
        "null-order",
        "CockroachDB sorts NULLs first, PostgreSQL last: say NULLS FIRST or NULLS LAST in a window's ORDER BY",
        finder=_window_orderings,
    ),
)
SQL_RULES = KEYWORD_RULES + SQL_ONLY_RULES
# Python SQL strings: the keyword rules and the window ordering (a staging query ranked pulls by
# `order by committed_at desc, pull_id` without NULLS; the statement log found it,
# tests/test_statement_log.py). Integer division and system columns are left to the SQL files: in
# Python they match too much that is not SQL.
PYTHON_RULES = KEYWORD_RULES + tuple(r for r in SQL_ONLY_RULES if r.rule == "null-order")

# -------------------------------------------------------------------------------------------- masking


@dataclass
class _Scan:
    """A text with comments, literals and Jinja blanked (``code``), and what was taken out."""

    code: str
    jinja: list[tuple[int, str]] = field(default_factory=list)
    comments: list[tuple[int, str]] = field(default_factory=list)


class _Lines:
    """Offset to 1-based line number."""

    def __init__(self, text: str) -> None:
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> int:
        return bisect.bisect_left(self._newlines, offset) + 1


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


_JINJA = re.compile(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_SQL_START = re.compile(r"--|/\*|'|\"|(?<![\w$])\$(?:[a-z_]\w*)?\$", _FLAGS)


def _strip_jinja(text: str, scan: _Scan) -> str:
    for m in _JINJA.finditer(text):
        (scan.comments if m.group().startswith("{#") else scan.jinja).append((m.start(), m.group()))
    return _JINJA.sub(lambda m: _blank(m.group()), text)


def _block_comment_end(text: str, start: int) -> int:
    """End of the (possibly nested) ``/* */`` comment opening at ``start``."""
    depth, i = 0, start
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("/*", "*/"):
            depth += 1 if pair == "/*" else -1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _quote_end(text: str, start: int, backslashes: bool) -> int:
    """End (past the closing quote) of the ``'`` literal opening at ``start``; ``''`` is an escape."""
    i = start + 1
    while i < len(text):
        char = text[i]
        escaped = (backslashes and char == "\\") or text[i : i + 2] == "''"
        if escaped:
            i += 2
        elif char == "'":
            return i + 1
        else:
            i += 1
    return len(text)


def _mask_sql(text: str, scan: _Scan) -> str:
    """Blank comments (recorded in ``scan.comments``), string bodies and dollar-quoted bodies."""
    out, i = [], 0
    while m := _SQL_START.search(text, i):
        start, token = m.start(), m.group()
        out.append(text[i:start])
        if token in ("--", "/*"):
            end = text.find("\n", start) if token == "--" else _block_comment_end(text, start)
            end = len(text) if end < 0 else end
            scan.comments.append((start, text[start:end]))
            out.append(_blank(text[start:end]))
        elif token == '"':
            end = text.find('"', start + 1) + 1 or len(text)
            out.append(text[start:end])
        else:
            end, piece = _literal(text, start, token)
            out.append(piece)
        i = end
    out.append(text[i:])
    return "".join(out)


def _literal(text: str, start: int, token: str) -> tuple[int, str]:
    """A quoted or dollar-quoted literal at ``start``: its end and its masked form (delimiters kept)."""
    if token == "'":
        e_string = start > 0 and text[start - 1] in "eE" and not text[start - 2 : start - 1].isalnum()
        end = _quote_end(text, start, backslashes=e_string)
        return end, "'" + _blank(text[start + 1 : end - 1]) + text[end - 1 : end]
    close = text.find(token, start + len(token))
    if close < 0:
        return len(text), token + _blank(text[start + len(token) :])
    return close + len(token), token + _blank(text[start + len(token) : close]) + token


def _scan_sql(text: str) -> _Scan:
    scan = _Scan("")
    scan.code = _mask_sql(_strip_jinja(text, scan), scan)
    return scan


_YAML_COMMENT = re.compile(r"(?:(?<=\s)|^)#[^\n]*", re.MULTILINE)


def _scan_yaml(text: str) -> _Scan:
    scan = _Scan("")
    scan.comments = [(m.start(), m.group()) for m in _YAML_COMMENT.finditer(text)]
    scan.code = _YAML_COMMENT.sub(lambda m: _blank(m.group()), text)
    return scan


# ------------------------------------------------------------------------------------------ findings

_WAIVER = re.compile(r"crdb-ok\b(?P<rest>[^\n]*)", _FLAGS)
_WAIVER_REASON = re.compile(r"\s*:\s*(?P<reason>.*?)\s*(?:-?#\}|\*/)?\s*$")


@dataclass(frozen=True, order=True)
class _Hit:
    line: int
    rule: str
    message: str


def _waivers(comments: Iterable[tuple[int, str]], line_of: Callable[[int], int]) -> tuple[set[int], set[int]]:
    """Lines holding a valid waiver, and lines holding a waiver without a reason."""
    good: set[int] = set()
    bad: set[int] = set()
    for offset, comment in comments:
        for m in _WAIVER.finditer(comment):
            reason = _WAIVER_REASON.match(m["rest"])
            (good if reason and reason["reason"] else bad).add(line_of(offset + m.start()))
    return good, bad


def _statement_cover(code: str, line_of: _Lines, waived: set[int]) -> set[int]:
    """Lines of every statement whose first line, or a line between it and the previous ``;``, is waived."""
    covered: set[int] = set()
    start = 0
    for end in [m.start() for m in re.finditer(";", code)] + [len(code)]:
        body = code[start:end]
        if body.strip():
            first = line_of(start + len(body) - len(body.lstrip()))
            header = min(line_of(start - 1) + 1 if start else 1, first)
            if waived.intersection(range(header, first + 1)):
                covered.update(range(header, line_of(end) + 1))
        start = end + 1
    return covered


def _hits(
    scan: _Scan, rules: Iterable[_Rule], config_rules: Iterable[_Rule], *, statements: bool
) -> list[_Hit]:
    """Rule hits in a scanned text, waivers applied, sorted and de-duplicated."""
    line_of = _Lines(scan.code)
    hits = [_Hit(line_of(o), r.rule, r.message) for r in rules for o in r.offsets(scan.code)]
    hits += [
        _Hit(line_of(start + o), r.rule, r.message)
        for start, block in scan.jinja
        for r in config_rules
        for o in r.offsets(block)
    ]
    good, bad = _waivers(scan.comments, line_of)
    exempt = good | (_statement_cover(scan.code, line_of, good) if statements else set())
    kept = {h for h in hits if h.line not in exempt} | {_Hit(line, "waiver", _MSG_WAIVER) for line in bad}
    return sorted(kept)


def _violations(hits: Iterable[_Hit], text: str, path: str) -> list[Violation]:
    lines = text.split("\n")
    return [Violation(path, h.line, h.rule, h.message, lines[h.line - 1].strip()) for h in hits]


# ------------------------------------------------------------------------------------------ public API


def check_sql(text: str, path: str = "<sql>") -> list[Violation]:
    """Check a SQL file or a dbt model (Jinja allowed) against every rule."""
    return _violations(_hits(_scan_sql(text), SQL_RULES, CONFIG_RULES, statements=True), text, path)


def check_yaml(text: str, path: str = "<yaml>") -> list[Violation]:
    """Check dbt YAML (``dbt_project.yml``, schema files) with the configuration rules only."""
    return _violations(_hits(_scan_yaml(text), CONFIG_RULES, (), statements=False), text, path)


_SQL_HINT = re.compile(
    r"\b(?:select|insert|update|delete|create|alter|drop|truncate|merge|copy|do|listen|unlisten|notify)\b",
    _FLAGS,
)


def check_python(text: str, path: str) -> list[Violation]:
    """Check SQL-looking string constants of a Python source with the keyword rules.

    Every ``str`` constant and f-string (its constant parts joined, each ``{...}`` replaced by ``x``) that
    contains a SQL keyword is checked with :data:`PYTHON_RULES` (no [integer-division] or [system-column]:
    too many false positives on strings that are not SQL). Docstrings are skipped: they are prose.
    A hit is reported on its own line when the string's source spans as many lines as its value (a
    triple-quoted literal), otherwise on the string's first line. Raises ``SyntaxError`` on invalid Python.
    """
    tree = ast.parse(text)
    good, bad = _waivers(_python_comments(text), _Lines(text))
    hits = {_Hit(line, "waiver", _MSG_WAIVER) for line in bad}
    for node, statement in _sql_strings(tree):
        lines = {statement.lineno, *range(node.lineno, (node.end_lineno or node.lineno) + 1)}
        if good & lines:
            continue
        hits.update(_string_hits(node))
    return _violations(sorted(hits), text, path)


def _string_hits(node: ast.Constant | ast.JoinedStr) -> Iterator[_Hit]:
    value = _string_value(node)
    exact = (node.end_lineno or node.lineno) - node.lineno == value.count("\n")
    for hit in _hits(_scan_sql(value), PYTHON_RULES, (), statements=True):
        yield _Hit(node.lineno + hit.line - 1 if exact else node.lineno, hit.rule, hit.message)


def _string_value(node: ast.Constant | ast.JoinedStr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else "x" for v in node.values)


def _sql_strings(tree: ast.AST) -> Iterator[tuple[ast.Constant | ast.JoinedStr, ast.stmt]]:
    """SQL-looking strings (not docstrings, not f-string parts) with their innermost statement."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        parent = parents.get(node)
        if isinstance(node, ast.JoinedStr) and isinstance(parent, ast.FormattedValue):
            continue
        is_string = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_string and (isinstance(parent, ast.JoinedStr) or node in docstrings):
            continue
        if (is_string or isinstance(node, ast.JoinedStr)) and _SQL_HINT.search(_string_value(node)):
            yield node, _statement_of(node, parents)


def _docstrings(tree: ast.AST) -> set[ast.AST]:
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        node.body[0].value
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }


def _statement_of(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.stmt:
    while not isinstance(node, ast.stmt):
        node = parents[node]
    return node


def _python_comments(text: str) -> list[tuple[int, str]]:
    """``#`` comments of a Python source as (offset, text)."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    comments = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                comments.append((starts[token.start[0] - 1] + token.start[1], token.string))
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse accepted the source; a tokenizer quirk only loses waivers
    return comments


def check_tree(root: Path, *, include_python: bool = True) -> list[Violation]:
    """Check every ``*.sql``, ``*.yml``/``*.yaml`` and (optionally) ``*.py`` file under ``root``.

    Skips :data:`SKIP_DIRS` and this tests directory, but not ``target/``: compiled dbt SQL
    (``target/compiled``, ``target/run``) is what runs on the database. Python files that do not parse
    are skipped (the test suite and ruff report those).
    """
    violations: list[Violation] = []
    for path in _files(Path(root), include_python):
        violations.extend(_check_file(path))
    return violations


def _files(root: Path, include_python: bool) -> Iterator[Path]:
    suffixes = {".sql", ".yml", ".yaml"} | ({".py"} if include_python else set())
    for directory, dirs, files in os.walk(root):
        if Path(directory).resolve() == _TESTS_DIR:
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        yield from (Path(directory, f) for f in sorted(files) if Path(f).suffix.lower() in suffixes)


def _check_file(path: Path) -> list[Violation]:
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".sql":
        return check_sql(text, str(path))
    if suffix in (".yml", ".yaml"):
        return check_yaml(text, str(path))
    try:
        return check_python(text, str(path))
    except (SyntaxError, ValueError):
        return []
