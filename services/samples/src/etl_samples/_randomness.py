"""Deterministic randomness, standard library only.

Two kinds: sequential streams (``random.Random`` seeded with a string, which Python hashes with
SHA-512, so the stream does not depend on ``PYTHONHASHSEED``), one per generated entity so that
entities do not shift each other; and keyed values (SplitMix64 of a salted key) for the few
attributes another entity must look up by id without the whole table in memory (a customer's
country when an order picks its currency, a product's list price when a line is priced).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

_MASK64 = (1 << 64) - 1


def stream(seed: int, name: str) -> random.Random:
    """The random stream of one entity for one seed."""
    return random.Random(f"etl-samples:{seed}:{name}")


def _mix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class Keyed:
    """Random access numbers: ``unit(key, field)`` is always the same for the same seed and name."""

    def __init__(self, seed: int, name: str) -> None:
        digest = hashlib.sha256(f"etl-samples:{seed}:{name}".encode()).digest()
        self._salt = int.from_bytes(digest[:8], "big")

    def unit(self, key: int, field: int = 0) -> float:
        """A number in [0, 1)."""
        mixed = _mix64(self._salt ^ _mix64((key * 64 + field) & _MASK64))
        return (mixed >> 11) / float(1 << 53)


class Weighted(Generic[T]):
    """Items with weights, picked with one uniform number."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items = tuple(item for item, _ in pairs)
        self._cumulative = list(itertools.accumulate(weight for _, weight in pairs))
        self._total = self._cumulative[-1]

    def pick(self, unit: float) -> T:
        """The item for ``unit`` in [0, 1)."""
        index = bisect.bisect_right(self._cumulative, unit * self._total)
        return self.items[min(index, len(self.items) - 1)]


def uuid4_from(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (not from the operating system); the same text as
    ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, formatted directly for speed."""
    value = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# RFC 4122 variant (10xx in the clock_seq_hi byte) and version 4 (0100 in the time_hi nibble).
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_SET = (0x8000 << 48) | (4 << 76)
