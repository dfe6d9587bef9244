"""JSON read without losing a digit.

Staging keeps what the source sent, so a JSON number is stored as its exact decimal value: a 24-digit
decimal, ``1e400`` or ``18446744073709551617`` must come out of the batch as it went in. orjson, the
fast parser, reads every number with a fraction or exponent as a 64-bit float and every integer past
the 64-bit range as a float too; jiter's ``float_mode="decimal"`` reads them exactly (as
:class:`~decimal.Decimal`, integers of any size as ``int``) but costs more.

:func:`loads` takes the fast path unless the text holds a number that a float may not keep: 16 or
more significant digits, or an exponent. Below that, a float's shortest representation is the
number's own decimal value (15 significant digits always survive the round trip), so orjson loses
nothing. The test is a scan of the bytes for a run of 16 digits (and dots) or a digit followed by an
exponent mark; a match inside a string only sends that text down the exact path, it never loses.

Decimals read this way are written back as JSON numbers (``encode_batch(..., json_numbers=True)``),
and integers past 64 bits as their digits, through :class:`orjson.Fragment`.
"""

from __future__ import annotations

from typing import Any

import jiter
import orjson

# A number a 64-bit float may not keep: 16 or more significant digits (a run of 16 digits and dots, as
# every such number has one), or an exponent (always right after a digit). Digits and dots become "0"
# and "E" becomes "e", and two substring searches find both: 1.5 us for a 386-byte line, where a
# regular expression took 8.4 us (orjson parses it in 2).
_DIGITS = bytes.maketrans(b"123456789.E", b"0000000000e")
_DIGITS_TEXT = str.maketrans("123456789.E", "0000000000e")
_LONG = b"0" * 16
_EXPONENT = b"0e"


class JsonError(ValueError):
    """Malformed JSON: ``reason`` says what, ``pos`` is the character offset (None when unknown)."""

    def __init__(self, reason: str, pos: int | None) -> None:
        super().__init__(reason if pos is None else f"{reason} (character {pos})")
        self.reason = reason
        self.pos = pos


def needs_exact(data: bytes | str) -> bool:
    """Whether ``data`` may hold a number that orjson would round (a digit run or an exponent inside a
    string also counts: it only costs the exact parser)."""
    if isinstance(data, str):
        text = data.translate(_DIGITS_TEXT)
        return "0000000000000000" in text or "0e" in text
    digits = bytes(data).translate(_DIGITS)
    return _LONG in digits or _EXPONENT in digits


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; every number keeps its exact value (see the module's docstring)."""
    if not needs_exact(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise JsonError(str(exc).split(": line ", 1)[0], exc.pos) from None
    return loads_exact(data)


def loads_exact(data: bytes | str) -> Any:
    """The exact (slower) path: numbers with a fraction or exponent as Decimal."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    try:
        return jiter.from_json(raw, float_mode="decimal", cache_mode="keys", allow_inf_nan=False)
    except ValueError as exc:
        # jiter: "<reason> at line L column C"; the position is the byte offset of that column
        text = str(exc)
        reason, _, place = text.partition(" at line ")
        return _raise_jiter(reason, place, raw)


def _raise_jiter(reason: str, place: str, raw: bytes) -> Any:
    pos: int | None = None
    line_text, _, column_text = place.partition(" column ")
    if line_text.isdigit() and column_text.isdigit():
        line, column = int(line_text), int(column_text)
        start = 0
        for _ in range(line - 1):
            start = raw.index(b"\n", start) + 1
        pos = len(raw[: start + max(0, column - 1)].decode("utf-8", "replace"))
    raise JsonError(reason, pos)


def _fragment(value: Any) -> Any:
    return orjson.Fragment(str(value).encode("ascii"))


def exact_numbers(value: Any) -> Any:
    """``value`` with every integer past the 64-bit range as a Fragment of its digits (orjson refuses
    them). Only called after orjson did, so the common case never walks the rows."""
    if isinstance(value, list):
        return [exact_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: exact_numbers(item) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return _fragment(value)
    return value


def holds_nul(value: Any) -> bool:
    """Whether a parsed value holds a NUL character in a string or key (the warehouse's JSON cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    return False


class RawJson:
    """A json/jsonb value as a source database wrote it: stored as that JSON (``encode_batch`` embeds
    it), never parsed. Parsing it with the standard library cost a third of a database pull, and read
    its numbers as floats."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"RawJson({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJson) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
