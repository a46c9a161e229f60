"""What the scheduled jobs did: one row per run in ``job_runs``, for ``lorebot feedback stats`` and the App Home.

A run is recorded as ``running`` when it starts and gets its outcome when it ends: ``ok``,
``skipped`` (nothing to do, or another scheduler holds the job's lock) or ``failed`` (with a short
reason; the traceback goes to the log). A process killed mid-run leaves its row ``running`` until
the job's next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Index, Integer, MetaData, String, Table, Text, func, select, update

from training.database import create_tables, reporting_outages

log = logging.getLogger(__name__)

RUNNING, OK, SKIPPED, FAILED = "running", "ok", "skipped", "failed"
OUTCOMES = (OK, SKIPPED, FAILED)
DETAIL_CHARS = 500

metadata = MetaData()

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(100), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("holder", String(200)),
    Index("ix_job_runs_job", "job", "id"),
)


@dataclass(frozen=True)
class Outcome:
    """What a job function may return to say how its run went (returning nothing means ``ok``).

    >>> skipped("12 new examples; training waits for 50")
    Outcome(outcome='skipped', detail='12 new examples; training waits for 50')
    """

    outcome: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"a run's outcome is one of {OUTCOMES}, not {self.outcome!r}")


def ok(detail: str = "") -> Outcome:
    return Outcome(OK, detail)


def skipped(detail: str) -> Outcome:
    return Outcome(SKIPPED, detail)


def failed(detail: str) -> Outcome:
    return Outcome(FAILED, detail)


@dataclass(frozen=True)
class JobRun:
    """One recorded run of a job."""

    id: int
    job: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str
    holder: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "outcome": self.outcome,
            "detail": self.detail,
            "holder": self.holder,
        }


class RunRecord:
    """The run in progress, handed to the ``with record_run(...)`` block to set its outcome."""

    def __init__(self, run_id: int):
        self.id = run_id
        self.outcome = OK
        self.detail = ""

    def set(self, outcome: Outcome) -> None:
        self.outcome, self.detail = outcome.outcome, outcome.detail

    def skip(self, detail: str) -> None:
        self.set(skipped(detail))


class JobLog:
    """The ``job_runs`` table (created if missing)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        create_tables(engine, metadata)

    @contextmanager
    def record(self, job: str, *, holder: str | None = None) -> Iterator[RunRecord]:
        """Record a run of ``job`` around the block: its outcome from the record, or ``failed``
        with the exception's first line when the block raises (the exception goes on up)."""
        run = RunRecord(self.start(job, holder=holder))
        try:
            yield run
        except BaseException as e:
            self._finish_quietly(run.id, FAILED, short_reason(e))
            raise
        self._finish_quietly(run.id, run.outcome, run.detail)

    def start(self, job: str, *, holder: str | None = None) -> int:
        row = {"job": job, "started_at": _now(), "outcome": RUNNING, "detail": "", "holder": holder}
        with reporting_outages(self.engine), self.engine.begin() as connection:
            return connection.execute(job_runs.insert().values(**row)).inserted_primary_key[0]

    def finish(self, run_id: int, outcome: str, detail: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"a run's outcome is one of {OUTCOMES}, not {outcome!r}")
        statement = (
            update(job_runs)
            .where(job_runs.c.id == run_id)
            .values(finished_at=_now(), outcome=outcome, detail=_clip(detail))
        )
        with reporting_outages(self.engine), self.engine.begin() as connection:
            connection.execute(statement)

    def add(self, job: str, outcome: str, detail: str = "", *, holder: str | None = None) -> None:
        """Record a run that ended as it began (a missed run time, a run skipped before it started)."""
        self.finish(self.start(job, holder=holder), outcome, detail)

    def latest(self) -> dict[str, JobRun]:
        """The most recent run of every job that has run, by job name."""
        newest = select(func.max(job_runs.c.id)).group_by(job_runs.c.job).scalar_subquery()
        query = select(job_runs).where(job_runs.c.id.in_(newest)).order_by(job_runs.c.job)
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return {row["job"]: _run_from_row(row) for row in connection.execute(query).mappings()}

    def runs(self, job: str | None = None, *, limit: int = 100) -> list[JobRun]:
        """Recent runs, newest first (of one job, or of all)."""
        query = select(job_runs).order_by(job_runs.c.id.desc()).limit(limit)
        if job is not None:
            query = query.where(job_runs.c.job == job)
        with reporting_outages(self.engine), self.engine.connect() as connection:
            return [_run_from_row(row) for row in connection.execute(query).mappings()]

    def _finish_quietly(self, run_id: int, outcome: str, detail: str) -> None:
        # The job's own result or exception matters more than the bookkeeping failing.
        try:
            self.finish(run_id, outcome, detail)
        except Exception:
            log.error("could not record the end of job run %s (%s)", run_id, outcome, exc_info=True)


@contextmanager
def record_run(engine: Engine, job: str, *, holder: str | None = None) -> Iterator[RunRecord]:
    """``JobLog(engine).record(job)``: record one run around a ``with`` block."""
    with JobLog(engine).record(job, holder=holder) as run:
        yield run


def latest_runs(engine: Engine) -> dict[str, JobRun]:
    """The most recent run of every job, for display."""
    return JobLog(engine).latest()


def short_reason(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message.

    >>> short_reason(ValueError("bad value\\nmore detail"))
    'ValueError: bad value'
    """
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0].strip()}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(detail: str) -> str:
    return detail if len(detail) <= DETAIL_CHARS else detail[: DETAIL_CHARS - 1] + "…"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite keeps no time zone: everything is written as UTC, so a naive value read back is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def _run_from_row(row: Any) -> JobRun:
    return JobRun(id=row["id"], job=row["job"], started_at=_utc(row["started_at"]),
                  finished_at=_utc(row["finished_at"]), outcome=row["outcome"], detail=row["detail"],
                  holder=row["holder"])
