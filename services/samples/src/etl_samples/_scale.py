"""How big each entity is for a number of orders (the one scale parameter)."""

from __future__ import annotations

from dataclasses import dataclass

from . import _calendar

# One day of web events per this many orders, at least 60 days and at most the whole calendar:
# the default demo (2000 orders) gets 60 daily files, 25,585 orders or more cover all 731 days.
ORDERS_PER_EVENT_DAY = 35
MIN_EVENT_DAYS = 60
EVENTS_PER_ORDER = 5


@dataclass(frozen=True)
class Scale:
    orders: int

    def __post_init__(self) -> None:
        if self.orders < 1:
            raise ValueError(f"orders must be at least 1, not {self.orders}")

    @property
    def customers(self) -> int:
        return max(50, self.orders // 8)

    @property
    def products(self) -> int:
        return max(40, min(5000, self.orders // 20))

    @property
    def accounts(self) -> int:
        return max(1, self.customers // 4)

    @property
    def web_events(self) -> int:
        return self.orders * EVENTS_PER_ORDER

    @property
    def event_days(self) -> int:
        """Web events cover the last ``event_days`` days of the calendar."""
        return min(_calendar.DAYS, max(MIN_EVENT_DAYS, -(-self.orders // ORDERS_PER_EVENT_DAY)))
