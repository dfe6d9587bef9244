"""Reading a large result through a server-side cursor that survives a lost connection.

A read that orders its rows by a unique key resumes where it stopped: on a new connection, the query
is sent again for the rows after the last one handed out (keyset pagination). A read that has no such
order can only start again from the beginning, and says so (:class:`Restarted`), so that the caller
discards what it made of the rows so far. docs/cockroachdb.md, "Reconnect and retry".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ._db import RetryPolicy
from ._errors import is_connection_lost

_log = logging.getLogger(__name__)

#: ``statement(conn, after)``: the query and its parameters, for every row when ``after`` is None, else
#: for the rows that come after the row whose position (``position(row)``) is ``after``.
StatementFor = Callable[[psycopg.Connection[Any], Sequence[Any] | None], tuple[Any, Sequence[Any]]]


@dataclass(frozen=True)
class Restarted:
    """Yielded by :meth:`KeysetRead.batches` when the read starts again from the first row: whatever
    was made of the rows before must be discarded."""

    reason: str


class KeysetRead:
    """The rows of one query, ``fetch_rows`` at a time, through a server-side cursor.

    ``connect`` opens a connection (closed here when done); ``first``, if given, is used for the first
    attempt and left open (without ``connect``, losing it is raised). With ``position`` (the values the
    query orders by, a unique key), a lost connection resumes after the last row handed out. Without
    it, the read starts again from the first row, yielding :class:`Restarted` first when rows were
    already handed out (only with ``restartable``; otherwise the loss is raised). Consecutive losses
    without a row in between are tried ``policy.attempts`` times with its backoff; errors other than a
    lost connection are raised as they are.
    """

    def __init__(
        self,
        statement: StatementFor,
        *,
        connect: Callable[[], psycopg.Connection[Any]] | None,
        name: str,
        cursor_name: str,
        fetch_rows: int,
        position: Callable[[Sequence[Any]], Sequence[Any]] | None = None,
        restartable: bool = False,
        policy: RetryPolicy | None = None,
        first: psycopg.Connection[Any] | None = None,
    ) -> None:
        self.statement = statement
        self.connect = connect
        self.name = name
        self.cursor_name = cursor_name
        self.fetch_rows = fetch_rows
        self.position = position
        self.restartable = restartable
        self.policy = policy or RetryPolicy()
        self.first = first
        #: the cursor's description once the query ran (of the latest attempt)
        self.description: list[Any] | None = None
        self.reconnects = 0

    def batches(self) -> Iterator[list[tuple[Any, ...]] | Restarted]:
        after: Sequence[Any] | None = None
        handed_out = False
        failures = 0
        conn = self.first
        while True:
            owned = conn is None
            try:
                if conn is None:
                    assert self.connect is not None
                    conn = self.connect()
                with conn.transaction(), conn.cursor(name=self.cursor_name) as cursor:
                    cursor.itersize = self.fetch_rows
                    query, params = self.statement(conn, after)
                    cursor.execute(query, params)
                    self.description = list(cursor.description or [])
                    while rows := cursor.fetchmany(self.fetch_rows):
                        failures = 0
                        if self.position is not None:
                            after = self.position(rows[-1])
                        handed_out = True
                        yield rows
                return
            except psycopg.Error as exc:
                if not is_connection_lost(exc, conn) or self.connect is None:
                    raise
                failures += 1
                resume = self.position is not None and after is not None
                if handed_out and self.position is None and not self.restartable:
                    raise
                if failures >= self.policy.attempts:
                    raise
                delay = self.policy.delay(failures)
                _log.warning(
                    "%s: connection lost mid-read (SQLSTATE %s: %s), reconnecting; %s; retry %d/%d in %.2fs",
                    self.name,
                    exc.sqlstate or "none",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    "resuming after the last row read" if resume else "reading again from the first row",
                    failures,
                    self.policy.attempts - 1,
                    delay,
                    extra={"sqlstate": exc.sqlstate or "none", "attempt": failures, "read": self.name},
                )
                time.sleep(delay)
                self.reconnects += 1
                if handed_out and self.position is None:
                    handed_out = False
                    yield Restarted(f"{self.name}: the connection was lost mid-read")
            finally:
                if owned and conn is not None:
                    conn.close()
            conn = None
