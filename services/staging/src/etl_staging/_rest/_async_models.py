"""Configuration of a ``kind: rest_async`` entity: one path template fanned out over many independent
requests (dates, values such as account ids, or a known number of pages).

Every fan-out request is **one page**: there is no per-request pagination. A fan-out variable is bound
to its ``name`` (``param`` for pages): ``{name}`` placeholders in ``path`` and in ``params`` values are
replaced by it; when no placeholder names it, it is sent as the query parameter ``name``.
"""

from __future__ import annotations

import re
import string
from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .._contract import ContractMode, DeclaredColumns, columns_field, contract_field
from ._models import _DOTTED, _NAME, _Strict, check_records_path, check_relative_path

_RELATIVE_DATE = re.compile(r"^today(?:-(\d{1,5})d)?$")
_VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_REQUESTS = 100_000


def resolve_date(value: str, today: date) -> date:
    """An ISO date, ``today`` or ``today-Nd`` (N days before today)."""
    match = _RELATIVE_DATE.match(value)
    if match:
        return today - timedelta(days=int(match.group(1) or 0))
    return date.fromisoformat(value)


def _check_date(value: str) -> str:
    if _RELATIVE_DATE.match(value):
        return value
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO date (2024-01-31) nor 'today' / 'today-Nd'") from None
    return value


class DatesFanOut(_Strict):
    """One request per date from ``start`` to ``end`` (both included), ``step_days`` apart."""

    type: Literal["dates"]
    name: str = Field(pattern=_VARIABLE, description="Placeholder or query parameter receiving the date")
    start: str = Field(description="ISO date, 'today' or 'today-Nd'")
    end: str = Field(default="today", description="ISO date, 'today' or 'today-Nd' (included)")
    step_days: int = Field(default=1, ge=1, le=366)
    format: str = Field(default="%Y-%m-%d", min_length=1, description="strftime format of the value sent")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date(cls, value: object) -> object:
        if isinstance(value, date):  # YAML reads an unquoted 2024-01-31 as a date
            value = value.isoformat()
        return _check_date(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _ordered(self) -> DatesFanOut:
        if not _RELATIVE_DATE.match(self.start) and not _RELATIVE_DATE.match(self.end):
            if date.fromisoformat(self.start) > date.fromisoformat(self.end):
                raise ValueError("start is after end")
        return self

    def dates(self, today: date) -> list[str]:
        first, last = resolve_date(self.start, today), resolve_date(self.end, today)
        count = (last - first).days // self.step_days + 1 if first <= last else 0
        if count > MAX_REQUESTS:
            raise ValueError(f"{count} dates is more than {MAX_REQUESTS} requests")
        return [(first + timedelta(days=i * self.step_days)).strftime(self.format) for i in range(count)]


class ValuesFanOut(_Strict):
    """One request per listed value (account ids, regions, endpoints), in list order."""

    type: Literal["values"]
    name: str = Field(pattern=_VARIABLE, description="Placeholder or query parameter receiving the value")
    values: list[str] = Field(min_length=1, max_length=MAX_REQUESTS)

    @field_validator("values")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("values repeat; each value is one request")
        return value


class PagesFanOut(_Strict):
    """Pages ``start`` .. ``start + count - 1`` requested independently. With ``count_path`` the first
    page is requested alone and its body gives the number of pages at that dotted path."""

    type: Literal["pages"]
    param: str = Field(pattern=_VARIABLE, description="Placeholder or query parameter receiving the page")
    start: int = Field(default=1, ge=0)
    count: int | None = Field(default=None, ge=1, le=MAX_REQUESTS)
    count_path: str | None = Field(default=None, pattern=_DOTTED, description="Total pages in the first body")

    @model_validator(mode="after")
    def _one_count(self) -> PagesFanOut:
        if (self.count is None) == (self.count_path is None):
            raise ValueError("give exactly one of count or count_path")
        return self

    @property
    def name(self) -> str:
        return self.param


FanOut = Annotated[DatesFanOut | ValuesFanOut | PagesFanOut, Field(discriminator="type")]


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields of a template (ValueError when it is not a valid template)."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def fill(template: str, name: str, value: str) -> str:
    return template.replace("{" + name + "}", value) if "{" in template else template


class AsyncRestEntity(_Strict):
    """One entity of a ``kind: rest_async`` source: ``path`` requested once per fan-out value.

    Each request is a single page (no pagination within a request); the pull stores the records in
    fan-out order (request i before request i + 1) whatever order the answers arrive in.
    """

    name: str = Field(pattern=_NAME)
    path: str = Field(description="Appended to the base URL; may hold the fan-out {placeholder}")
    method: Literal["GET"] = "GET"
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    records_path: str = Field(default="", description="Dotted path to the record list; '' = the body is it")
    fan_out: FanOut
    keep_payload: bool = Field(default=True, description="Store every response body as fetched")
    freshness_sla_hours: float | None = Field(
        default=None, gt=0, description="Overrides the source's freshness SLA (hours)"
    )
    keep_unchanged_pulls: bool = Field(
        default=False,
        description="Keep every full pull (and key listing) as a new committed snapshot, even one equal to"
        " the previous (default: an unchanged pull is recorded as 'unchanged' and its batches removed)",
    )
    contract: ContractMode | None = contract_field()
    columns: DeclaredColumns = columns_field()

    @field_validator("records_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return check_records_path(value)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)

    @model_validator(mode="after")
    def _placeholders_bound(self) -> AsyncRestEntity:
        templates = [("path", self.path)] + [
            (f"params.{key}", value) for key, value in self.params.items() if isinstance(value, str)
        ]
        for where, template in templates:
            try:
                names = placeholders(template)
            except ValueError as exc:
                raise ValueError(f"{where}: not a valid template ({exc})") from None
            unknown = names - {self.fan_out.name}
            if unknown:
                raise ValueError(
                    f"{where}: placeholder {{{sorted(unknown)[0]}}} is not the fan-out variable"
                    f" {self.fan_out.name!r}"
                )
        return self

    @property
    def sends_variable_as_param(self) -> bool:
        """True when no placeholder uses the fan-out variable: it then goes in the query string."""
        marker = "{" + self.fan_out.name + "}"
        return marker not in self.path and not any(
            isinstance(value, str) and marker in value for value in self.params.values()
        )
