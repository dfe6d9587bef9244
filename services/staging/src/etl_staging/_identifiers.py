"""Names in the sources file that the jobs use as column names: checked when the file is loaded."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

#: A column name the jobs put into SQL (quoted) and into the staged columns: letters, digits, ``_`` and
#: ``$``, not starting with a digit or ``$``, at most 63 characters (PostgreSQL's limit; CockroachDB's is
#: larger). Mixed case is kept as written (the names are quoted).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def check_identifier(value: str) -> str:
    """``value`` if it is a column name (:data:`_IDENTIFIER`), else a ValueError saying what is allowed."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an identifier: letters, digits, _ and $, starting with a letter or _,"
            " at most 63 characters"
        )
    return value


#: A column name in the sources file (``key``, ``cursor``, ``columns``, ``rename`` targets).
Identifier = Annotated[str, AfterValidator(check_identifier)]
