"""Named locks in lorebot's database, so two scheduler processes never run the same job at once.

A lock is a lease: a row in ``job_locks`` that names its holder and when it expires. Taking it is
one transaction (take over the row if it has expired, else insert it; the primary key settles a
race), so it works the same on SQLite and PostgreSQL. A holder that crashes blocks nobody for
longer than its lease; one that lives renews the lease from a heartbeat thread, however long the
job (training takes hours). Time is the database's clock, so hosts whose clocks disagree still
agree on when a lease ran out.

    with db_lock(engine, "train", lease_s=300) as lease:
        if not lease:
            print("someone else is training:", lease.held_by)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Column, Double, Engine, MetaData, String, Table, cast, delete, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from training.database import create_tables, dialect_insert, reporting_outages

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 300.0

metadata = MetaData()

job_locks = Table(
    "job_locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    # Seconds since the epoch, by the database's clock.
    Column("acquired_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)


def new_holder_id() -> str:
    """Who holds a lock: ``host:pid:random``, unique per process and per call."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    """The answer to "may I?": truthy when this holder got the lock.

    ``held_by`` names whoever has it instead (when not obtained); ``lost`` is set when a renewal
    found the lease taken over (the database was unreachable for longer than the lease).
    """

    name: str
    holder: str
    obtained: bool
    held_by: str | None = None
    lost: threading.Event = field(default_factory=threading.Event, repr=False)

    def __bool__(self) -> bool:
        return self.obtained


class DatabaseLocks:
    """Take, renew and release named leases in ``job_locks`` (created if missing)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        create_tables(engine, metadata)

    def acquire(self, name: str, *, holder: str, lease_s: float = DEFAULT_LEASE_S) -> Lease:
        """Take ``name`` for ``lease_s`` seconds if it is free, expired or already ours; never waits."""
        _check_lease(lease_s)
        now = self._now()
        row = {"holder": holder, "acquired_at": now, "expires_at": now + lease_s}
        take_over = (
            update(job_locks)
            .where(job_locks.c.name == name, or_(job_locks.c.expires_at < now, job_locks.c.holder == holder))
            .values(**row)
        )
        insert = dialect_insert(self.engine, job_locks).values(name=name, **row)
        insert = insert.on_conflict_do_nothing(index_elements=["name"])
        counted = {"preserve_rowcount": True}
        with reporting_outages(self.engine), self.engine.begin() as connection:
            if connection.execute(take_over, execution_options=counted).rowcount > 0:
                return Lease(name, holder, obtained=True)
            if connection.execute(insert, execution_options=counted).rowcount > 0:
                return Lease(name, holder, obtained=True)
            held_by = connection.execute(select(job_locks.c.holder).where(job_locks.c.name == name)).scalar()
        return Lease(name, holder, obtained=False, held_by=held_by)

    def renew(self, name: str, *, holder: str, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Push the lease's end ``lease_s`` seconds from now; False if ``holder`` no longer has it."""
        _check_lease(lease_s)
        statement = (
            update(job_locks)
            .where(job_locks.c.name == name, job_locks.c.holder == holder)
            .values(expires_at=self._now() + lease_s)
        )
        with reporting_outages(self.engine), self.engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def release(self, name: str, *, holder: str) -> bool:
        """Free the lock if ``holder`` has it; anyone else's release changes nothing."""
        statement = delete(job_locks).where(job_locks.c.name == name, job_locks.c.holder == holder)
        with reporting_outages(self.engine), self.engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def holder(self, name: str) -> str | None:
        """Who holds an unexpired lease on ``name``, or None."""
        query = select(job_locks.c.holder).where(job_locks.c.name == name, job_locks.c.expires_at >= self._now())
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def _now(self) -> ColumnElement[float]:
        if self.engine.dialect.name == "postgresql":
            # clock_timestamp(), not now(): the latter is frozen at the start of the transaction.
            return cast(func.extract("epoch", func.clock_timestamp()), Double)
        return (func.julianday("now") - 2440587.5) * 86400.0


@contextmanager
def db_lock(
    engine: Engine,
    name: str,
    *,
    holder: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    heartbeat: bool = True,
    locks: DatabaseLocks | None = None,
) -> Iterator[Lease]:
    """Hold ``name`` for the ``with`` block if it is free: yields a :class:`Lease`, falsy if not.

    Never blocks. While held, a heartbeat thread renews the lease every third of ``lease_s``;
    on leaving the block the lock is released (an error releasing it is logged: the lease simply
    runs out).
    """
    locks = locks or DatabaseLocks(engine)
    lease = locks.acquire(name, holder=holder or new_holder_id(), lease_s=lease_s)
    if not lease:
        yield lease
        return
    stop = threading.Event()
    beat = None
    if heartbeat:
        beat = threading.Thread(target=_keep_renewing, args=(locks, lease, lease_s, stop),
                                name=f"lorebot-lock-{name}", daemon=True)
        beat.start()
    try:
        yield lease
    finally:
        stop.set()
        if beat is not None:
            beat.join()
        try:
            locks.release(name, holder=lease.holder)
        except Exception:
            log.warning("could not release lock %r; it expires within %.0f s", name, lease_s, exc_info=True)


def _keep_renewing(locks: DatabaseLocks, lease: Lease, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(lease_s / 3):
        try:
            renewed = locks.renew(lease.name, holder=lease.holder, lease_s=lease_s)
        except Exception:
            # The next beat tries again; the lease outlives two missed beats.
            log.warning("could not renew lock %r", lease.name, exc_info=True)
            continue
        if not renewed:
            log.error("lock %r was taken over by another holder: its lease ran out", lease.name)
            lease.lost.set()
            return


def _check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise ValueError(f"a lease lasts a positive number of seconds, not {lease_s!r}")
