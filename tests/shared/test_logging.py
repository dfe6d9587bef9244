"""Structured JSON logging: one event per line, context fields, redaction of secrets."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from etl_shared import JsonFormatter, bind_context, configure_logging, log_context, redact


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Give back the root logger as it was (configure_logging changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose events are formatted by JsonFormatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("etl_tests.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def _events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_standard_fields(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = capture
    with log_context(run_id="run-7", zone="staging"):
        logger.info("loaded %d rows from %s", 12, "fx", extra={"rows": 12, "entity": "rates"})
        logger.warning("line one\nline two")

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["message"] == "loaded 12 rows from fx"
    assert first["run_id"] == "run-7"
    assert first["zone"] == "staging"
    assert first["source"] is None
    assert first["logger"] == "etl_tests.logging"
    assert first["rows"] == 12
    assert first["entity"] == "rates"
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert second["level"] == "WARNING"
    assert second["message"] == "line one\nline two"


def test_context_is_added_inside_the_block_and_removed_after(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = capture
    with log_context(run_id="run-8", zone="staging"):
        with log_context(source="fx", entity="rates"):
            logger.info("inside")
        logger.info("outer")
    logger.info("outside")

    inside, outer, outside = _events(buffer)
    assert (inside["source"], inside["entity"], inside["run_id"]) == ("fx", "rates", "run-8")
    assert outer["source"] is None and "entity" not in outer and outer["run_id"] == "run-8"
    assert outside["run_id"] is None and outside["zone"] is None


def test_context_is_removed_when_the_block_raises(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    with pytest.raises(RuntimeError), log_context(source="crm"):
        raise RuntimeError("fail")
    logger.info("after")
    assert _events(buffer)[0]["source"] is None


def test_bind_context_holds_for_the_rest_of_the_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture

    def job() -> None:
        bind_context(run_id="run-9", zone="semantic")
        logger.info("first")
        logger.info("second")

    contextvars.copy_context().run(job)  # a copy: the binding does not leak into other tests
    logger.info("elsewhere")

    first, second, elsewhere = _events(buffer)
    assert (first["run_id"], first["zone"]) == ("run-9", "semantic")
    assert (second["run_id"], second["zone"]) == ("run-9", "semantic")
    assert elsewhere["run_id"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot reach postgresql://etl:Sup3r-Secret@db:26257/etl",
            "cannot reach postgresql://etl:***@db:26257/etl",
        ),
        ("https://user:pa55@api.example.com/v1?x=1", "https://user:***@api.example.com/v1?x=1"),
        ("Authorization: Bearer eyJhbGciOi.J9-abc_def", "Authorization: Bearer ***"),
        ("authorization: bearer abc123", "authorization: bearer ***"),
        ("GET /rates?token=abc123&page=2", "GET /rates?token=***&page=2"),
        ("GET /rates?api_key=k-123&page=2", "GET /rates?api_key=***&page=2"),
        ("GET /rates?apikey=k-123", "GET /rates?apikey=***"),
        ("GET /rates?access_token=zz9", "GET /rates?access_token=***"),
        ("dsn host=db password=hunter2 user=etl", "dsn host=db password=*** user=etl"),
        ("client_secret=s3 and secret=s4", "client_secret=*** and secret=***"),
        ("nothing to hide at https://api.example.com/v1", "nothing to hide at https://api.example.com/v1"),
        ("postgresql://etl@db/etl", "postgresql://etl@db/etl"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_messages_are_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    logger.info("connecting to %s with %s", "postgresql://etl:Sup3r-Secret@db/etl", "Bearer tok-123")
    output = buffer.getvalue()
    assert "Sup3r-Secret" not in output and "tok-123" not in output
    assert _events(buffer)[0]["message"] == "connecting to postgresql://etl:***@db/etl with Bearer ***"


def test_exceptions_are_formatted_and_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    try:
        raise ConnectionError("refused by https://svc:Sup3r-Secret@api.example.com/?token=t0k")
    except ConnectionError:
        logger.exception("pull failed")

    (event,) = _events(buffer)
    assert event["level"] == "ERROR"
    assert event["message"] == "pull failed"
    assert "Traceback (most recent call last)" in event["exception"]
    assert "ConnectionError: refused by https://svc:***@api.example.com/?token=***" in event["exception"]
    assert "Sup3r-Secret" not in buffer.getvalue() and "t0k" not in buffer.getvalue()


def test_values_that_are_not_json_are_written_as_text(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    logger.info("odd", extra={"when": datetime(2024, 1, 31, 2, 0), "path": {1, 2} - {2}})
    event = _events(buffer)[0]
    assert event["when"] == "2024-01-31 02:00:00"
    assert event["path"] == "{1}"


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_writes_to_the_given_stream() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    logging.getLogger("etl_tests.configured").debug("visible at %s", "debug")
    logging.getLogger("urllib3").info("noisy library chatter")

    (event,) = _events(stream)
    assert event["level"] == "DEBUG"
    assert event["message"] == "visible at debug"
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_twice_keeps_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first)
    configure_logging("WARNING", stream=second)
    logger = logging.getLogger("etl_tests.configured")
    logger.info("dropped")
    logger.warning("kept")

    assert first.getvalue() == ""
    assert [e["message"] for e in _events(second)] == ["kept"]
