"""The cadence: jobs survive a restart, two schedulers never train at once, every run is on record."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from training.jobs_log import JobLog
from training.schedule import JobSpec, build_scheduler, ensure_jobs, start_with_jobs

HERE = "tests.training.test_schedule"


# ----------------------------------------------------------------- job functions, referenced by text
# Each scheduler imports them by name, so they keep their state in files, not in this module.


def occupy(state_dir: str, seconds: float) -> str:
    """Stand in for training: take a while, and notice if another run is going at the same time."""
    state = Path(state_dir)
    try:
        os.close(os.open(state / "running", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        (state / "overlapped").touch()
    with open(state / "runs", "a") as runs:
        runs.write("run\n")
    time.sleep(seconds)
    (state / "running").unlink(missing_ok=True)
    return "occupied"


def count(state_dir: str) -> None:
    with open(Path(state_dir) / "runs", "a") as runs:
        runs.write("run\n")


def explode() -> None:
    raise RuntimeError("the disk is full\nand a second line nobody needs")


# ----------------------------------------------------------------- helpers


@pytest.fixture
def schedulers(database_url):
    """Builds background schedulers on the test database; all are shut down afterwards."""
    built = []

    def build(**options):
        built.append(build_scheduler(database_url, blocking=False, **options))
        return built[-1]

    yield build
    for scheduler in built:
        if scheduler.running:
            scheduler.shutdown(wait=True)


@pytest.fixture
def job_log(open_database):
    return JobLog(open_database())


def weekly(job_id: str, func: str, **changes) -> JobSpec:
    options = {"trigger": "cron", "schedule": {"day_of_week": "sun", "hour": 3, "minute": 0}, **changes}
    return JobSpec(job_id, f"{HERE}:{func}", **options)


def wait_for_runs(job_log: JobLog, job: str, n: int, timeout: float = 10.0) -> list:
    """The job's first ``n`` finished runs, oldest first, once recorded."""
    deadline = time.monotonic() + timeout
    while True:
        finished = [run for run in reversed(job_log.runs(job)) if run.finished_at is not None]
        if len(finished) >= n:
            return finished
        assert time.monotonic() < deadline, f"{job}: {len(finished)} finished runs after {timeout}s, wanted {n}"
        time.sleep(0.05)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_soon(scheduler, job_id: str) -> datetime:
    """Make the job due now; returns the run time set (it moves on once the job is handed over)."""
    soon = datetime.now(timezone.utc)
    scheduler.modify_job(job_id, next_run_time=soon)
    return soon


def weekly_due_in(delta: timedelta) -> dict:
    """A weekly schedule whose next run is ``delta`` from now: how the Sunday 03:00 job looks from
    Saturday afternoon, whatever day the test runs on."""
    at = datetime.now(timezone.utc) + delta
    return {"day_of_week": at.strftime("%a").lower(), "hour": at.hour, "minute": at.minute}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# ----------------------------------------------------------------- tests


def test_jobs_persist_across_a_scheduler_restart(schedulers, tmp_path):
    specs = [
        weekly("train", "occupy", kwargs={"state_dir": str(tmp_path), "seconds": 0}, exclusive=True),
        JobSpec("reconcile", f"{HERE}:count", "interval", {"minutes": 15}, kwargs={"state_dir": str(tmp_path)}),
    ]
    first = schedulers()
    report = start_with_jobs(first, specs)
    planned = {job.id: job.next_run_time for job in first.get_jobs()}
    first.shutdown()
    time.sleep(1.1)  # an interval job rescheduled from "now" would move by this much

    second = schedulers()
    again = start_with_jobs(second, specs)

    assert sorted(report.added) == ["reconcile", "train"]
    assert sorted(again.kept) == ["reconcile", "train"] and again.added == again.updated == again.removed == []
    assert {job.id: job.next_run_time for job in second.get_jobs()} == planned
    train = second.get_job("train")
    assert train.func_ref == f"{HERE}:occupy" and train.kwargs == {"state_dir": str(tmp_path), "seconds": 0}
    assert planned["train"].weekday() == 6 and (planned["train"].hour, planned["train"].minute) == (3, 0)


def test_a_changed_schedule_applies_and_a_job_no_longer_specified_is_removed(schedulers, tmp_path):
    kwargs = {"state_dir": str(tmp_path)}
    first = schedulers()
    start_with_jobs(first, [weekly("export", "count", kwargs=kwargs), weekly("old", "count", kwargs=kwargs)])
    first.shutdown()

    second = schedulers()
    report = start_with_jobs(second, [weekly("export", "count", kwargs=kwargs,
                                             schedule={"hour": 2, "minute": 0})])

    assert (report.updated, report.removed) == (["export"], ["old"])
    [export] = second.get_jobs()
    assert (export.next_run_time.hour, export.next_run_time.minute) == (2, 0)
    assert export.next_run_time - datetime.now(timezone.utc) <= timedelta(days=1)


@pytest.mark.parametrize("schedule", [
    None,  # Sundays 03:00: from Saturday 03:00 on, its next run is less than a day away
    weekly_due_in(timedelta(hours=2)),
    weekly_due_in(timedelta(days=6, hours=23)),
], ids=["sunday-3am", "next-run-in-2-hours", "next-run-in-7-days"])
def test_two_schedulers_never_train_at_once(schedulers, job_log, tmp_path, schedule):
    changes = {"schedule": schedule} if schedule else {}
    train = weekly("train", "occupy", kwargs={"state_dir": str(tmp_path), "seconds": 1.5}, exclusive=True, **changes)
    first, second = schedulers(lease_s=5), schedulers(lease_s=5)
    start_with_jobs(first, [train])
    start_with_jobs(second, [train])

    due = run_soon(first, "train")
    wait_until(lambda: (tmp_path / "running").exists())
    # APScheduler moves the run time on (to the next weekly one, however near) just after handing
    # the job over: then the second's turn.
    wait_until(lambda: second.get_job("train").next_run_time > due)
    run_soon(second, "train")
    wait_until(lambda: any(run.outcome == "ok" for run in job_log.runs("train")))
    runs = job_log.runs("train")

    assert not (tmp_path / "overlapped").exists(), "two runs were training at the same time"
    assert lines(tmp_path / "runs") == 1
    [done] = [run for run in runs if run.outcome == "ok"]
    skipped = [run for run in runs if run is not done]
    assert done.detail == "occupied"
    # The other scheduler's run found the lock held. (Both share one job store, so the first
    # scheduler may also pick up the second's run while its own is going: one instance per job
    # skips that one, which is the other guarantee at work.)
    assert ("skipped", f"lock held by {done.holder}", False) in \
        {(run.outcome, run.detail, run.holder == done.holder) for run in skipped}
    assert {(run.outcome, run.detail) for run in skipped} <= \
        {("skipped", f"lock held by {done.holder}"), ("skipped", "the previous run is still going")}


def test_two_schedulers_firing_together_take_turns(schedulers, job_log, tmp_path):
    train = JobSpec("train", f"{HERE}:occupy", "interval", {"seconds": 1},
                    kwargs={"state_dir": str(tmp_path), "seconds": 0.6}, exclusive=True)
    first, second = schedulers(lease_s=5), schedulers(lease_s=5)
    start_with_jobs(first, [train])
    start_with_jobs(second, [train])

    time.sleep(3.5)
    first.shutdown()
    second.shutdown()

    runs = job_log.runs("train")
    assert not (tmp_path / "overlapped").exists(), "two runs were training at the same time"
    assert lines(tmp_path / "runs") == sum(run.outcome == "ok" for run in runs) >= 2
    assert {run.outcome for run in runs} <= {"ok", "skipped"}


def test_coalescing_one_instance_and_misfire_grace_are_applied(schedulers, tmp_path):
    scheduler = schedulers(misfire_grace_s=120)
    start_with_jobs(scheduler, [weekly("train", "count", kwargs={"state_dir": str(tmp_path)}, exclusive=True,
                                       misfire_grace_s=3 * 3600)])
    added = scheduler.add_job(f"{HERE}:count", "interval", minutes=5, id="plain", kwargs={"state_dir": str(tmp_path)})

    train = scheduler.get_job("train")
    assert (train.coalesce, train.max_instances, train.misfire_grace_time) == (True, 1, 3 * 3600)
    assert train.executor == "exclusive"
    assert (added.coalesce, added.max_instances, added.misfire_grace_time) == (True, 1, 120)
    assert str(scheduler.timezone) == "UTC"


def test_runs_missed_while_down_run_once_within_grace_and_are_recorded_skipped_past_it(schedulers, job_log, tmp_path):
    within, past = tmp_path / "within", tmp_path / "past"
    within.mkdir()
    past.mkdir()
    specs = [
        JobSpec("reingest", f"{HERE}:count", "interval", {"minutes": 10}, kwargs={"state_dir": str(within)},
                misfire_grace_s=3600),
        weekly("train", "count", kwargs={"state_dir": str(past)}, misfire_grace_s=60, exclusive=True),
    ]
    before = schedulers()
    before.start(paused=True)
    ensure_jobs(before, specs)
    now = datetime.now(timezone.utc)
    before.modify_job("reingest", next_run_time=now - timedelta(minutes=25))  # three runs missed
    before.modify_job("train", next_run_time=now - timedelta(minutes=10))  # missed by more than its grace
    before.shutdown()

    start_with_jobs(schedulers(), specs)
    [reingest] = wait_for_runs(job_log, "reingest", 1)
    [train] = wait_for_runs(job_log, "train", 1)
    time.sleep(0.3)  # room for a second run, if coalescing failed

    assert lines(within / "runs") == 1, "missed runs coalesce into one"
    assert reingest.outcome == "ok"
    assert lines(past / "runs") == 0
    assert train.outcome == "skipped" and train.detail.startswith("missed its run time")


def test_a_failing_job_is_recorded_as_failed_and_the_scheduler_keeps_running(schedulers, job_log, tmp_path):
    scheduler = schedulers()
    start_with_jobs(scheduler, [weekly("export", "explode", exclusive=True),
                                weekly("reconcile", "count", kwargs={"state_dir": str(tmp_path)})])

    run_soon(scheduler, "export")
    [failure] = wait_for_runs(job_log, "export", 1)
    run_soon(scheduler, "reconcile")
    [after] = wait_for_runs(job_log, "reconcile", 1)

    assert (failure.outcome, failure.detail) == ("failed", "RuntimeError: the disk is full")
    assert after.outcome == "ok" and scheduler.running
    # The lock of a failed exclusive job is released at once, not left to expire.
    from training.locks import DatabaseLocks

    assert DatabaseLocks(job_log.engine).holder("export") is None


def test_jobs_need_a_started_scheduler_and_textual_references(database_url):
    scheduler = build_scheduler(database_url, blocking=False)
    with pytest.raises(RuntimeError, match="start the scheduler"):
        ensure_jobs(scheduler, [weekly("train", "count")])
    with pytest.raises(ValueError, match="textual reference"):
        JobSpec("train", "count", "cron", {"hour": 3})


def test_a_blocking_scheduler_runs_its_jobs_until_shut_down(database_url, job_log, tmp_path):
    import threading

    scheduler = build_scheduler(database_url, blocking=True)
    announced, returned = [], threading.Event()

    def run() -> None:
        start_with_jobs(scheduler, [weekly("export", "count", kwargs={"state_dir": str(tmp_path)})],
                        on_started=lambda s, report: announced.append((report.added, len(s.get_jobs()))))
        returned.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: scheduler.running and announced)
        run_soon(scheduler, "export")
        [run] = wait_for_runs(job_log, "export", 1)
    finally:
        scheduler.shutdown()
        thread.join(10)

    assert announced == [(["export"], 1)] and run.outcome == "ok"
    assert returned.is_set() and not scheduler.running


def test_a_blocking_scheduler_whose_jobs_cannot_be_set_up_stops_and_says_why(database_url):
    scheduler = build_scheduler(database_url, blocking=True)
    bad = JobSpec("export", f"{HERE}:count", "cron", {"hour": 99})

    with pytest.raises(ValueError):
        start_with_jobs(scheduler, [bad])
    assert not scheduler.running
