"""Splitting a SQL script into its statements, the way the server's lexer would.

A migration file is run one statement at a time (docs/cockroachdb.md, "Migrations"), so it is cut at
each ``;`` that is not inside a string constant (``'...'``, ``E'...'``), a quoted identifier
(``"..."``), a dollar-quoted body (``$$...$$``, ``$tag$...$tag$``) or a comment (``-- ...``,
``/* ... */``, which nest in PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$]")


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text from its first token to its last (no ``;``), the comments
    just before it, and the line it starts on (1-based, for messages)."""

    text: str
    line: int
    comments: tuple[str, ...] = ()

    def normalized(self) -> str:
        """Lower-case, comments removed, runs of white space as one space: for matching its form."""
        return " ".join(_without_comments(self.text).lower().split())


class UnterminatedSql(ValueError):
    """A string, quoted identifier, dollar-quoted body or block comment runs to the end of the script."""


def split_statements(script: str) -> list[Statement]:
    """The statements of ``script`` in order; empty ones (``;;``, comments only) are left out."""
    statements: list[Statement] = []
    start = 0
    for end in [*_top_level_semicolons(script), len(script)]:
        statement = _statement(script, start, end)
        if statement is not None:
            statements.append(statement)
        start = end + 1
    return statements


def _statement(script: str, start: int, end: int) -> Statement | None:
    """The statement in ``script[start:end]`` with its leading comments split off, or None if empty."""
    position = start
    comments: list[str] = []
    while True:
        while position < end and script[position].isspace():
            position += 1
        if script.startswith("--", position):
            stop = script.find("\n", position, end)
            stop = end if stop < 0 else stop
            comments.append(script[position:stop])
            position = stop
        elif script.startswith("/*", position):
            stop = _skip_block_comment(script, position)
            comments.append(script[position:stop])
            position = stop
        else:
            break
    text = script[position:end].rstrip()
    if not text:
        return None
    return Statement(text, script.count("\n", 0, position) + 1, tuple(comments))


def _top_level_semicolons(script: str) -> list[int]:
    found = []
    i, n = 0, len(script)
    while i < n:
        char = script[i]
        if char == ";":
            found.append(i)
            i += 1
        elif script.startswith("--", i):
            stop = script.find("\n", i)
            i = n if stop < 0 else stop + 1
        elif script.startswith("/*", i):
            i = _skip_block_comment(script, i)
        elif char == "'":
            i = _skip_quoted(script, i, "'", backslash=_escape_string(script, i))
        elif char == '"':
            i = _skip_quoted(script, i, '"', backslash=False)
        elif char == "$" and (i == 0 or not _IDENTIFIER_CHAR.match(script[i - 1])):
            tag = _TAG.match(script, i)
            if tag is None:  # $1, a parameter
                i += 1
                continue
            stop = script.find(tag.group(0), tag.end())
            if stop < 0:
                raise UnterminatedSql(
                    f"dollar-quoted body {tag.group(0)} opened on line {_line(script, i)} never ends"
                )
            i = stop + len(tag.group(0))
        else:
            i += 1
    return found


def _skip_quoted(script: str, start: int, quote: str, *, backslash: bool) -> int:
    """The index after the closing quote; a doubled quote (and with ``backslash`` a ``\\'``) is part of it."""
    i = start + 1
    while i < len(script):
        char = script[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == quote:
            if script.startswith(quote, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    kind = "quoted identifier" if quote == '"' else "string"
    raise UnterminatedSql(f"{kind} opened on line {_line(script, start)} never ends")


def _skip_block_comment(script: str, start: int) -> int:
    """The index after the ``*/`` that closes the comment at ``start`` (block comments nest)."""
    depth, i = 0, start
    while i < len(script):
        if script.startswith("/*", i):
            depth += 1
            i += 2
        elif script.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise UnterminatedSql(f"comment opened on line {_line(script, start)} never ends")


def _without_comments(text: str) -> str:
    """``text`` with its comments replaced by a space (strings and quoted bodies left as they are)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            stop = text.find("\n", i)
            i = n if stop < 0 else stop
            out.append(" ")
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            out.append(" ")
        elif char in "'\"":
            stop = _skip_quoted(text, i, char, backslash=char == "'" and _escape_string(text, i))
            out.append(text[i:stop])
            i = stop
        elif (
            char == "$"
            and (i == 0 or not _IDENTIFIER_CHAR.match(text[i - 1]))
            and (tag := _TAG.match(text, i))
        ):
            stop = text.find(tag.group(0), tag.end())
            stop = n if stop < 0 else stop + len(tag.group(0))
            out.append(text[i:stop])
            i = stop
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _escape_string(script: str, quote: int) -> bool:
    """Whether the string opening at ``quote`` is an escape string constant (``E'...'``, backslashes)."""
    return (
        quote > 0
        and script[quote - 1] in "eE"
        and (quote < 2 or not _IDENTIFIER_CHAR.match(script[quote - 2]))
    )


def _line(script: str, index: int) -> int:
    return script.count("\n", 0, index) + 1
