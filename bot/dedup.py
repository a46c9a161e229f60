"""Event de-duplication that holds across restarts and replicas, so each Slack post is answered once.

Slack retries an event it thinks went unacknowledged, and one post can arrive as several events
(``app_mention`` and ``message``). The listener asks :meth:`EventLedger.first_sighting` with every
key that names the post; the database's primary key decides who saw it first, so two replicas
racing on the same event still answer it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Column, Double, Engine, MetaData, String, Table, delete, insert
from sqlalchemy.exc import IntegrityError

from training.database import create_tables, reporting_outages

metadata = MetaData()

seen_events = Table(
    "seen_events",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("seen_at", Double, nullable=False, index=True),
)


class EventLedger:
    """Keys of the events already handled, in the shared database.

    ``clock`` (seconds since the epoch) is for tests that need to age entries.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        self._clock = clock
        create_tables(engine, metadata)

    def first_sighting(self, *keys: str | None) -> bool:
        """Record ``keys`` (e.g. ``"event:Ev0123"``, ``"message:C0123:1700000000.000100"``) together.

        True only if none of them was seen before; otherwise False, and none of them is recorded
        by this call. Empty keys are skipped; raises ValueError if no key is left.
        """
        # Sorted, so that two replicas inserting overlapping keys lock them in the same order
        # and one waits for the other instead of dead-locking.
        wanted = sorted({key for key in keys if key})
        if not wanted:
            raise ValueError("first_sighting needs at least one non-empty key")
        seen_at = self._clock()
        try:
            with reporting_outages(self.engine), self.engine.begin() as connection:
                connection.execute(insert(seen_events), [{"key": key, "seen_at": seen_at} for key in wanted])
        except IntegrityError:
            # Another handler (a retry, the twin event, another replica) holds one of the keys;
            # the transaction rolled back, so our other keys are not left behind.
            return False
        return True

    def forget_older_than(self, age: timedelta) -> int:
        """Drop keys first seen more than ``age`` ago; returns how many were dropped."""
        cutoff = self._clock() - age.total_seconds()
        with reporting_outages(self.engine), self.engine.begin() as connection:
            return connection.execute(delete(seen_events).where(seen_events.c.seen_at < cutoff)).rowcount
