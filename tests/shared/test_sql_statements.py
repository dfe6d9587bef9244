"""Splitting a migration file into statements: strings, quoted identifiers, dollar-quoted bodies and
comments may hold a ``;`` that does not end a statement."""

from __future__ import annotations

import pytest

from etl_shared._sql_statements import Statement, UnterminatedSql, split_statements


def _texts(script: str) -> list[str]:
    return [s.text for s in split_statements(script)]


def test_plain_statements_are_cut_at_each_semicolon() -> None:
    assert _texts("create schema if not exists a;\ncreate table if not exists a.t (id int);\n") == [
        "create schema if not exists a",
        "create table if not exists a.t (id int)",
    ]


def test_the_last_statement_needs_no_semicolon_and_empty_ones_are_left_out() -> None:
    assert _texts(";; select 1 ;\n;\n  select 2  ") == ["select 1", "select 2"]
    assert split_statements("") == []
    assert split_statements("-- only a comment\n/* and another */\n;") == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("select 'a;b'; select 2", ["select 'a;b'", "select 2"]),
        ("select 'it''s; fine'; select 2", ["select 'it''s; fine'", "select 2"]),
        ("select E'back\\'slash;'; select 2", ["select E'back\\'slash;'", "select 2"]),
        # not an escape string: the e ends an identifier, so the backslash is an ordinary character
        ("select some_e'x\\'; select 2", ["select some_e'x\\'", "select 2"]),
        ('select 1 as "odd;name"""; select 2', ['select 1 as "odd;name"""', "select 2"]),
        ("select $$a;b$$; select 2", ["select $$a;b$$", "select 2"]),
        ("select $fn$ $$; $fn$; select 2", ["select $fn$ $$; $fn$", "select 2"]),
        (
            "select 1 -- a comment; with 'quotes\nfrom t; select 2",
            ["select 1 -- a comment; with 'quotes\nfrom t", "select 2"],
        ),
        (
            "select /* outer /* inner; */ still; */ 1; select 2",
            ["select /* outer /* inner; */ still; */ 1", "select 2"],
        ),
        ("prepare p as select $1; select 2", ["prepare p as select $1", "select 2"]),
        ("select a$b from t; select 2", ["select a$b from t", "select 2"]),
    ],
    ids=[
        "string",
        "doubled-quote",
        "escape-string",
        "not-an-escape-string",
        "quoted-identifier",
        "dollar-body",
        "tagged-dollar-body",
        "line-comment",
        "nested-block-comment",
        "parameter",
        "dollar-in-identifier",
    ],
)
def test_a_semicolon_inside_is_not_the_end(script: str, expected: list[str]) -> None:
    assert _texts(script) == expected


def test_a_function_body_stays_one_statement() -> None:
    script = """
create or replace function ops.touch() returns trigger language plpgsql as $body$
begin
    new.updated_at := now();  -- the row's time
    return new;
end;
$body$;

create table if not exists ops.x (id int);
"""
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].text.startswith("create or replace function ops.touch()")
    assert statements[0].text.endswith("$body$")
    assert statements[1] == Statement("create table if not exists ops.x (id int)", 9)


def test_leading_comments_are_kept_apart_with_the_line_the_statement_starts_on() -> None:
    script = "-- header\n\n-- idempotent: checked in the body\n/* block */\ndo $$ begin end $$;\nselect 1;"
    first, second = split_statements(script)
    assert first.text == "do $$ begin end $$"
    assert first.line == 5
    assert first.comments == ("-- header", "-- idempotent: checked in the body", "/* block */")
    assert second == Statement("select 1", 6)


def test_normalized_is_lower_case_without_comments_on_one_line() -> None:
    (statement,) = split_statements("CREATE  TABLE -- why\n IF NOT EXISTS /* x */ t ('A  b' text)")
    assert statement.normalized() == "create table if not exists t ('a b' text)"


@pytest.mark.parametrize(
    ("script", "what"),
    [
        ("select 'open", "string opened on line 1"),
        ('select 1;\nselect "open', "quoted identifier opened on line 2"),
        ("select $$ open", "dollar-quoted body \\$\\$ opened on line 1"),
        ("select 1 /* open /* */", "comment opened on line 1"),
    ],
)
def test_an_unterminated_quote_or_comment_is_refused(script: str, what: str) -> None:
    with pytest.raises(UnterminatedSql, match=what):
        split_statements(script)
