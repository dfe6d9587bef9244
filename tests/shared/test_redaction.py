"""A password never reaches a message, whatever characters it holds: property-based, over random
passwords with URL delimiters (@ : / ? # % & =), spaces and non-ASCII characters, written into the
URL unencoded as an operator might. Checked on the URL of the settings as the jobs log it, on the
real errors of psycopg (libpq) connecting with it, and on dbt's event log."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_shared import (
    ConfigurationError,
    Database,
    DatabaseError,
    _logging,
    redact,
    redact_url,
    url_password_problem,
)

#: Delimiters a URL parser cuts at, and characters no message of libpq or of the jobs holds (upper-case
#: consonants, some digits, non-ASCII), so that a part of the password in a message is a leak.
ALPHABET = "@:/?#%&=[] " + "QXZJKWVBN" + "3589" + "üß€中й"
PASSWORDS = st.text(alphabet=ALPHABET, min_size=3, max_size=24).filter(lambda p: p.strip() == p)
#: Where a URL's password starts: the part before it is the same in every case.
NEUTRAL = "ppp"


@contextlib.contextmanager
def fresh_secrets() -> Iterator[None]:
    """A registry of secrets for one example only (it is per process otherwise)."""
    saved = _logging._SECRETS
    _logging._SECRETS = _logging._SecretPieces()
    try:
        yield
    finally:
        _logging._SECRETS = saved


#: The jobs' own advice on an unreadable URL: it names the delimiters, so it is not a leak
URL_ADVICE = "(percent-encode @ : / ? # % and spaces in the password)"


def leaks(password: str, text: str, neutral_text: str) -> list[str]:
    """The parts of ``password`` (3 characters or more) in ``text`` that the same message written
    with a neutral password does not hold (the jobs' fixed advice on encoding aside)."""
    text = text.replace(URL_ADVICE, "")
    parts = {password[i:j] for i in range(len(password)) for j in range(i + 3, len(password) + 1)}
    return sorted(part for part in parts if part in text and part not in neutral_text)


def settings_url(password: str) -> str:
    return f"postgresql://etl_user:{password}@db.internal.example:26257/warehouse?sslmode=verify-full"


def unreachable_url(password: str) -> str:
    return f"postgresql://etl_user:{password}@127.0.0.1:1/warehouse"


def connection_messages(password: str) -> list[str]:
    """What the jobs say when the warehouse at this URL cannot be reached: the redacted URL as logged,
    an error naming it, libpq's own error (through redact, as the job's log and audit row see it) and
    the Database's error."""
    url = unreachable_url(password)
    db = Database(url)  # registers the password, as every job's Database does
    messages = [redact_url(settings_url(password)), redact(f"job starting on {settings_url(password)}")]
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except (psycopg.Error, UnicodeDecodeError) as exc:  # psycopg decodes a %XX escape as UTF-8
        messages.append(redact(f"{type(exc).__name__}: {exc}"))
    try:
        db.connect().close()
    except (DatabaseError, ConfigurationError) as exc:
        messages.append(str(exc))
    return messages


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(password=PASSWORDS)
def test_no_part_of_the_password_reaches_a_connection_message(password: str) -> None:
    with fresh_secrets():
        neutral = connection_messages(NEUTRAL)
    with fresh_secrets():
        found = connection_messages(password)
    assert len(found) == len(neutral)
    for message, neutral_message in zip(found, neutral, strict=True):
        assert not leaks(password, message, neutral_message), message


@settings(max_examples=150, deadline=None, derandomize=True)
@given(password=PASSWORDS)
def test_redact_url_hides_any_password(password: str) -> None:
    url = settings_url(password)
    assert redact_url(url) == settings_url("***")
    with fresh_secrets():  # without the registry too, from the URL's form alone, to the end of the word
        password = password.replace(" ", "Q")
        url = settings_url(password)
        assert not leaks(
            password, redact(f"cannot connect to {url}"), f"cannot connect to {settings_url('***')}"
        )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(password=PASSWORDS)
def test_dbt_event_log_hides_any_password(password: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from dbt.events.types import MainEncounteredError
    from dbt_common.events.base_types import msg_from_base_event

    from etl_shared._dbt import DbtEventLog

    log = tmp_path_factory.mktemp("dbt") / "dbt.log"
    error = f"connection to server failed: host '{password}@127.0.0.1', password \"{password}\""
    with fresh_secrets():
        Database(unreachable_url(password))
        event_log = DbtEventLog(log, secrets=[password])
        with contextlib.redirect_stdout(io.StringIO()) as shown:
            event_log(msg_from_base_event(MainEncounteredError(exc=error)))
        event_log.close()
    written = json.loads(log.read_text(encoding="utf-8"))
    for text in (json.dumps(written, ensure_ascii=False), shown.getvalue(), log.read_text(encoding="utf-8")):
        assert not leaks(password, text, "connection to server failed: host '***@127.0.0.1', password"), text


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Pw5@x", "@"),
        ("a/b", "/"),
        ("a?b", "?"),
        ("a#b", "#"),
        ("50%off", "% not followed by two hex digits"),
        ("a b", "a space"),
    ],
)
def test_a_password_drivers_read_differently_is_refused_without_showing_it(
    password: str, problem: str
) -> None:
    message = url_password_problem(settings_url(password))
    assert message is not None and problem in message
    assert password not in message


def test_an_encoded_password_is_accepted() -> None:
    from urllib.parse import quote

    assert url_password_problem(settings_url(quote("Pw5@x/y?z#%ü", safe=""))) is None
    assert url_password_problem("postgresql://etl@host/db") is None


def test_the_settings_refuse_such_a_url_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from etl_shared import Settings, load_settings

    monkeypatch.setenv("ETL_DATABASE_URL", unreachable_url("abc@Pw5"))
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        load_settings(Settings)
    assert "ETL_DATABASE_URL" in str(info.value) and "Pw5" not in str(info.value)
