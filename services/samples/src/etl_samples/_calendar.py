"""The fixed calendar of the reference domain (never today's date) and its timestamp formats.

Orders fall on 2024-01-01 .. 2025-12-31; nothing is later than ``AS_OF``; all timestamps are UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2025, 12, 31)
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)  # exclusive
AS_OF = END - timedelta(seconds=1)  # the moment the source systems are "read"
SPAN_SECONDS = int((END - START).total_seconds())
DAYS = (LAST_DAY - FIRST_DAY).days + 1  # 731: 2024 is a leap year

# Customers register from a year before the first order until shortly before the last one.
REGISTRATION_START = datetime(2023, 1, 1, tzinfo=UTC)
REGISTRATION_END = datetime(2025, 10, 1, tzinfo=UTC)


def seconds_after(origin: datetime, seconds: float) -> datetime:
    """``origin`` plus whole seconds, never later than ``AS_OF``."""
    return min(AS_OF, origin + timedelta(seconds=int(seconds)))


def iso_seconds(moment: datetime) -> str:
    """``2024-01-03T10:15:22Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(day_prefix: str, millis_of_day: int) -> str:
    """``2024-01-03T10:15:22.123Z`` from ``'2024-01-03T'`` and the milliseconds since midnight UTC."""
    seconds, millis = divmod(millis_of_day, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{day_prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
