"""The cadence: APScheduler 3 with its job store in lorebot's database, every run locked and recorded.

Jobs live in the ``apscheduler_jobs`` table, so a restarted scheduler picks up where the last one
left off: a run time missed while it was down still runs on start (once, however many were missed:
coalescing) if it is within the job's misfire grace, and is recorded as skipped otherwise. A job is
stored by the textual reference of its function (``"bot.jobs:export_dataset"``) and picklable
keyword arguments only.

Every run goes through an executor that records it in ``job_runs`` (:mod:`training.jobs_log`).
Jobs marked ``exclusive`` also take a database lock named after the job
(:mod:`training.locks`), so two scheduler processes sharing the database never run one at the
same time: the second one's run is recorded as skipped, "lock held by …". Nothing here knows of
Slack or of the bot: the job functions are the composition root's (``bot/jobs.py``), and so are
the hooks that watch runs (``on_run`` for metrics, ``run_context`` for the logs' request ID).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_SCHEDULER_STARTED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from training.database import open_engine
from training.jobs_log import FAILED, SKIPPED, JobLog, Outcome
from training.locks import DEFAULT_LEASE_S, DatabaseLocks, db_lock, new_holder_id

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
EXCLUSIVE_EXECUTOR = "exclusive"
DEFAULT_MISFIRE_GRACE_S = 3600
COALESCE = True
MAX_INSTANCES = 1

# Told of every run that ended: the job's ID, its outcome (ok, skipped or failed) and how long it
# took in seconds (None for a run that never started: a missed run time, one still running).
OnRun = Callable[[str, str, float | None], None]
# Wraps a run's call of the job's function, given the job's ID and the run's ID in the job log.
RunContext = Callable[[str, int], AbstractContextManager[object]]


@dataclass(frozen=True)
class JobSpec:
    """One job as it should be scheduled.

    ``trigger`` is ``"cron"`` or ``"interval"`` and ``schedule`` its fields, as APScheduler's
    :class:`~apscheduler.triggers.cron.CronTrigger` and
    :class:`~apscheduler.triggers.interval.IntervalTrigger` take them (``{"hour": 2, "minute": 0}``,
    ``{"minutes": 15}``); beware that CronTrigger counts weekdays from 0 = Monday: use names.
    ``exclusive`` jobs hold a database lock while they run.
    """

    id: str
    func_ref: str
    trigger: Literal["cron", "interval"]
    schedule: Mapping[str, Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    exclusive: bool = False
    misfire_grace_s: int = DEFAULT_MISFIRE_GRACE_S
    description: str = ""

    def __post_init__(self) -> None:
        if ":" not in self.func_ref:
            raise ValueError(f"a job's function is a textual reference like 'package.module:function', "
                             f"not {self.func_ref!r}")
        if self.trigger not in ("cron", "interval"):
            raise ValueError(f"a job's trigger is 'cron' or 'interval', not {self.trigger!r}")

    def make_trigger(self, tz: Any) -> BaseTrigger:
        kind = CronTrigger if self.trigger == "cron" else IntervalTrigger
        return kind(timezone=tz, **self.schedule)


@dataclass
class EnsureReport:
    """What :func:`ensure_jobs` did to the job store, by job ID."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def build_scheduler(
    database_url: str,
    *,
    blocking: bool,
    timezone: str = "UTC",
    misfire_grace_s: int = DEFAULT_MISFIRE_GRACE_S,
    lease_s: float = DEFAULT_LEASE_S,
    max_workers: int = 4,
    on_run: OnRun | None = None,
    run_context: RunContext | None = None,
) -> BaseScheduler:
    """A scheduler whose jobs live in the database at ``database_url`` (not started).

    ``blocking``: a :class:`BlockingScheduler` (``start()`` runs it in the calling thread until
    shut down) rather than a :class:`BackgroundScheduler`. Runs are recorded in ``job_runs``;
    exclusive jobs hold a lease of ``lease_s`` seconds, renewed while they run. ``on_run`` is told
    of every run's end (:data:`OnRun`), skipped ones included; ``run_context`` wraps each call of
    a job's function (:data:`RunContext`). A failing hook is logged, never fails a run.
    """
    engine = open_engine(database_url)
    holder = new_holder_id()
    kind = _Blocking if blocking else _Background
    hooks = dict(on_run=on_run, run_context=run_context)
    scheduler = kind(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
        executors={
            "default": GuardedExecutor(engine, holder=holder, exclusive=False, max_workers=max_workers, **hooks),
            EXCLUSIVE_EXECUTOR: GuardedExecutor(engine, holder=holder, exclusive=True, lease_s=lease_s,
                                                max_workers=max_workers, **hooks),
        },
        job_defaults={"coalesce": COALESCE, "max_instances": MAX_INSTANCES, "misfire_grace_time": misfire_grace_s},
        timezone=timezone,
    )
    scheduler.add_listener(_RecordSkips(engine, holder, on_run=on_run), EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def ensure_jobs(scheduler: BaseScheduler, specs: Sequence[JobSpec], *, remove_others: bool = True) -> EnsureReport:
    """Make the job store hold exactly ``specs`` (the scheduler must be started; paused is fine).

    A job already stored as specified is left alone, keeping its next run time (so a run missed
    during a restart still happens); a changed one is replaced and rescheduled; a new one is
    added; with ``remove_others``, stored jobs that are no longer specified are removed.
    """
    if scheduler.state == STATE_STOPPED:
        raise RuntimeError("start the scheduler (paused is fine) before ensuring its jobs: "
                           "the job store is only readable once started")
    report = EnsureReport()
    wanted = {spec.id for spec in specs}
    if len(wanted) != len(specs):
        raise ValueError("two job specs share an ID")
    for spec in specs:
        trigger = spec.make_trigger(scheduler.timezone)
        existing = scheduler.get_job(spec.id)
        if existing is not None and _matches(existing, spec, trigger):
            report.kept.append(spec.id)
            continue
        scheduler.add_job(
            spec.func_ref, trigger=trigger, id=spec.id, name=spec.description or spec.id, kwargs=dict(spec.kwargs),
            executor=EXCLUSIVE_EXECUTOR if spec.exclusive else "default", misfire_grace_time=spec.misfire_grace_s,
            coalesce=COALESCE, max_instances=MAX_INSTANCES, replace_existing=True,
        )
        (report.updated if existing is not None else report.added).append(spec.id)
    if remove_others:
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
                report.removed.append(job.id)
    return report


def start_with_jobs(
    scheduler: BaseScheduler,
    specs: Sequence[JobSpec],
    *,
    on_started: Callable[[BaseScheduler, EnsureReport], None] | None = None,
) -> EnsureReport | None:
    """Start ``scheduler`` with exactly ``specs`` in its store: started paused, jobs ensured,
    ``on_started`` called (to print the schedule), then resumed.

    A :class:`BlockingScheduler` runs in this call until it is shut down (then None is returned);
    a background one returns at once with the :class:`EnsureReport`. If ensuring the jobs fails,
    the scheduler is shut down and the error raised here.
    """
    # BackgroundScheduler is a BlockingScheduler whose loop runs in a thread of its own.
    if isinstance(scheduler, BackgroundScheduler) or not isinstance(scheduler, BlockingScheduler):
        scheduler.start(paused=True)
        try:
            report = _ensure_and_announce(scheduler, specs, on_started)
        except BaseException:
            scheduler.shutdown(wait=False)
            raise
        scheduler.resume()
        return report

    failure: list[BaseException] = []

    def on_start(_event: object) -> None:
        # Runs inside start(), before the blocking loop: the one moment the store is readable
        # and no job has run yet.
        scheduler.remove_listener(on_start)
        try:
            _ensure_and_announce(scheduler, specs, on_started)
        except BaseException as e:
            failure.append(e)
            scheduler.shutdown(wait=False)  # the loop then ends at once
            return
        scheduler.resume()

    scheduler.add_listener(on_start, EVENT_SCHEDULER_STARTED)
    scheduler.start(paused=True)
    if failure:
        raise failure[0]
    return None


def _ensure_and_announce(scheduler: BaseScheduler, specs: Sequence[JobSpec],
                         on_started: Callable[[BaseScheduler, EnsureReport], None] | None) -> EnsureReport:
    report = ensure_jobs(scheduler, specs)
    if on_started is not None:
        on_started(scheduler, report)
    return report


def crontab_fields(line: str) -> dict[str, str]:
    """A crontab line (minute hour day month weekday) as CronTrigger fields.

    Name the weekdays: CronTrigger (APScheduler 3) counts 0 as Monday where cron means Sunday.
    A ``*`` day, month or weekday is left out (it is CronTrigger's default for them); minute and
    hour are always given, since CronTrigger would read a missing one as 0.

    >>> crontab_fields("0 3 * * sun")
    {'minute': '0', 'hour': '3', 'day_of_week': 'sun'}
    """
    values = line.split()
    if len(values) != 5:
        raise ValueError(f"a crontab line has 5 fields (minute hour day month weekday), not {len(values)}: {line!r}")
    fields = dict(zip(("minute", "hour", "day", "month", "day_of_week"), values, strict=True))
    return {name: value for name, value in fields.items() if value != "*" or name in ("minute", "hour")}


def describe_trigger(trigger: BaseTrigger) -> str:
    """A trigger in words, for the schedule a person reads.

    >>> describe_trigger(IntervalTrigger(minutes=15, timezone="UTC"))
    'every 0:15:00'
    >>> describe_trigger(CronTrigger(day_of_week="sun", hour=3, minute=0, timezone="UTC"))
    'cron day_of_week=sun hour=3 minute=0 (UTC)'
    """
    if isinstance(trigger, IntervalTrigger):
        return f"every {trigger.interval}"
    if isinstance(trigger, CronTrigger):
        fields = " ".join(f"{f.name}={f}" for f in trigger.fields if not f.is_default)
        return f"cron {fields} ({trigger.timezone})"
    return str(trigger)


class _StopsProcessing:
    """APScheduler 3's loop processes due jobs once more after ``shutdown()`` woke it: their
    submission fails (the executors are down) and their next run time moves on anyway, so a run
    that was due (one missed while the scheduler was down, say) would be lost. A stopped
    scheduler processes nothing."""

    state: int

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()  # type: ignore[misc]


class _Blocking(_StopsProcessing, BlockingScheduler):
    pass


class _Background(_StopsProcessing, BackgroundScheduler):
    pass


class GuardedExecutor(ThreadPoolExecutor):
    """A thread pool that records every run, and for exclusive jobs holds the job's lock first."""

    def __init__(self, engine: Engine, *, holder: str, exclusive: bool, lease_s: float = DEFAULT_LEASE_S,
                 max_workers: int = 4, on_run: OnRun | None = None, run_context: RunContext | None = None):
        super().__init__(max_workers)
        self.engine = engine
        self.holder = holder
        self.exclusive = exclusive
        self.lease_s = lease_s
        self.on_run = on_run
        self.run_context = run_context
        self._log: JobLog | None = None
        self._locks: DatabaseLocks | None = None

    def start(self, scheduler: BaseScheduler, alias: str) -> None:
        super().start(scheduler, alias)
        self._log = JobLog(self.engine)
        self._locks = DatabaseLocks(self.engine) if self.exclusive else None

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # APScheduler's own run_job still handles misfires and reports events; only the call of
        # the job's function is wrapped.
        super()._do_submit_job(_GuardedJob(job, self._guard(job)), run_times)

    def _guard(self, job: Job) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            assert self._log is not None, "the executor has not been started"
            started, outcome = time.monotonic(), FAILED
            try:
                with self._log.record(job.id, holder=self.holder) as record:
                    with self._context(job.id, record.id):
                        result = self._locked_call(job, record, args, kwargs)
                outcome = record.outcome
                return result
            finally:
                _tell(self.on_run, job.id, outcome, time.monotonic() - started)

        return run

    def _locked_call(self, job: Job, record: Any, args: Any, kwargs: Any) -> Any:
        if self._locks is None:
            return _note(record, job.func(*args, **kwargs))
        with db_lock(self.engine, job.id, holder=self.holder, lease_s=self.lease_s, locks=self._locks) as lease:
            if not lease:
                record.skip(f"lock held by {lease.held_by or 'another scheduler'}")
                return None
            return _note(record, job.func(*args, **kwargs))

    def _context(self, job_id: str, run_id: int) -> AbstractContextManager[object]:
        if self.run_context is None:
            return nullcontext()
        try:
            return self.run_context(job_id, run_id)
        except Exception:
            log.error("the run context of job %s failed; running it without", job_id, exc_info=True)
            return nullcontext()


def _tell(on_run: OnRun | None, job_id: str, outcome: str, seconds: float | None) -> None:
    if on_run is None:
        return
    try:
        on_run(job_id, outcome, seconds)
    except Exception:  # the run is done and recorded: reporting it must not turn it into a failure
        log.error("could not report the end of a run of job %s", job_id, exc_info=True)


class _GuardedJob:
    """The job as run_job sees it: the same job, with the guarded function in place of its own."""

    def __init__(self, job: Job, func: Callable[..., Any]):
        self._job = job
        self.func = func

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


def _note(record: Any, result: Any) -> Any:
    """A job's return value as its recorded outcome: an Outcome as is, a string as the detail."""
    if isinstance(result, Outcome):
        record.set(result)
    elif isinstance(result, str):
        record.detail = result
    return result


class _RecordSkips:
    """Runs that never started are recorded too: a missed run time, or one still running."""

    def __init__(self, engine: Engine, holder: str, *, on_run: OnRun | None = None):
        self.engine = engine
        self.holder = holder
        self.on_run = on_run

    def __call__(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            late = datetime.now(timezone.utc) - event.scheduled_run_time
            detail = f"missed its run time {event.scheduled_run_time:%Y-%m-%d %H:%M %Z} by {_rounded(late)} " \
                     "(the scheduler was down or busy)"
        else:
            detail = "the previous run is still going"
        try:
            JobLog(self.engine).add(event.job_id, SKIPPED, detail, holder=self.holder)
        except Exception:
            log.error("could not record that job %s was skipped (%s)", event.job_id, detail, exc_info=True)
        _tell(self.on_run, event.job_id, SKIPPED, None)


def _rounded(delta: timedelta) -> timedelta:
    return timedelta(seconds=round(delta.total_seconds()))


def _matches(job: Job, spec: JobSpec, trigger: BaseTrigger) -> bool:
    executor = EXCLUSIVE_EXECUTOR if spec.exclusive else "default"
    return (
        job.func_ref == spec.func_ref
        and job.args == ()
        and job.kwargs == dict(spec.kwargs)
        and job.executor == executor
        and job.name == (spec.description or spec.id)
        and job.misfire_grace_time == spec.misfire_grace_s
        and job.coalesce == COALESCE
        and job.max_instances == MAX_INSTANCES
        and _same_trigger(job.trigger, trigger)
    )


def _same_trigger(a: BaseTrigger, b: BaseTrigger) -> bool:
    # Triggers define no equality; their fields, interval and time zone are what schedules them.
    return (
        type(a) is type(b)
        and str(a) == str(b)
        and str(getattr(a, "timezone", None)) == str(getattr(b, "timezone", None))
        and getattr(a, "jitter", None) == getattr(b, "jitter", None)
    )

