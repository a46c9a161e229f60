"""The scheduler's jobs: when each runs (:func:`job_specs`) and the functions it runs.

The job store keeps only a function's name (``"bot.jobs:export_dataset"``), so each function
builds what it needs from settings, every run, and closes it after; none takes arguments. Each
returns an :class:`~training.jobs_log.Outcome` for the job log (``lorebot feedback stats``, the
App Home); an exception is recorded as a failed run and the scheduler carries on.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from slack_sdk.errors import SlackApiError

from bot.app import Services, build_services, slack_client
from bot.config import Settings, Source, load_settings
from knowledge.access import Scope
from knowledge.errors import WideningRefused
from training.jobs_log import Outcome, failed, ok, skipped
from training.schedule import JobSpec, crontab_fields

log = logging.getLogger(__name__)

HOUR = 3600


def job_specs(settings: Settings) -> list[JobSpec]:
    """The jobs, scheduled as the settings say (UTC). All are exclusive: with two scheduler
    processes on one database, each run happens in one of them."""
    return [
        JobSpec("reconcile", "bot.jobs:reconcile_votes", "interval", {"minutes": settings.reconcile_every_minutes},
                exclusive=True, misfire_grace_s=_half(settings.reconcile_every_minutes),
                description="Reconcile votes with Slack's reactions"),
        JobSpec("export", "bot.jobs:export_dataset", "cron", crontab_fields(settings.export_schedule),
                exclusive=True, misfire_grace_s=6 * HOUR, description="Export the training dataset"),
        JobSpec("train", "bot.jobs:train_if_enough", "cron", crontab_fields(settings.train_schedule),
                exclusive=True, misfire_grace_s=24 * HOUR, description="Train an adapter when enough is new"),
        JobSpec("reingest", "bot.jobs:reingest_sources", "interval", {"minutes": settings.reingest_every_minutes},
                exclusive=True, misfire_grace_s=_half(settings.reingest_every_minutes),
                description="Re-ingest the configured sources"),
        JobSpec("slack-sync", "bot.jobs:sync_slack_history", "interval", {"minutes": settings.slack_sync_minutes},
                exclusive=True, misfire_grace_s=_half(settings.slack_sync_minutes),
                description="Catch up listed Slack channels' history"),
        JobSpec("unit-vectors", "bot.jobs:prune_unit_vectors", "interval", {"hours": 24},
                exclusive=True, misfire_grace_s=12 * HOUR,
                description="Forget answer-unit vectors of text no longer indexed"),
    ]


def prune_unit_vectors() -> Outcome:
    """Forget the answer-unit vectors (``unit_vectors.sqlite3``) of text the index no longer holds:
    deleted messages and documents, old versions of edited ones."""
    settings = load_settings()
    if not settings.answer_unit_vectors:
        return skipped("LOREBOT_ANSWER_UNIT_VECTORS is off: no unit vectors are kept")
    with _services(settings) as services:
        removed = services.unit_vectors.prune(services.store.export_documents())
    return ok(f"{removed} unit vectors of text no longer indexed forgotten")


def sync_slack_history() -> Outcome:
    """Catch up every listed Slack channel (one ``ingest-slack`` has read) from its cursor: new,
    edited and deleted messages in the look-back, channels made private narrowed, archived or
    deleted ones removed (or kept, LOREBOT_SLACK_KEEP_ARCHIVED). Skipped when none is listed."""
    from bot.slack_history.reader import who_am_i
    from bot.slack_history.sync import build_slack_sync
    from bot.slack_history.sync_state import SyncState

    settings = load_settings()
    if not settings.slack_bot_token:
        return skipped("SLACK_BOT_TOKEN is not set: there is no Slack to read")
    with _services(settings) as services:
        if not SyncState(services.database).channels():
            return skipped("no Slack channel is listed (lorebot ingest-slack --channel …)")
        client = slack_client(settings, settings.slack_bot_token)
        sync = build_slack_sync(services, client, who_am_i(client, settings.slack_api_url))
        try:
            report = sync.catch_up()
        except WideningRefused as e:
            return failed(f"{len(e.widened)} documents would widen: not synced")
    return ok(report.summary()) if report.ok else failed(report.summary())


def reconcile_votes() -> Outcome:
    """Cast and retract reaction votes that Slack's events missed, on answers of the last days."""
    from bot import reconcile

    settings = load_settings()
    if not settings.slack_bot_token:
        return skipped("SLACK_BOT_TOKEN is not set: there is no Slack to ask")
    since = datetime.now(timezone.utc) - timedelta(days=settings.reconcile_window_days)
    with _services(settings) as services:
        client = slack_client(settings, settings.slack_bot_token)
        try:
            report = reconcile.reconcile_votes(client, services.feedback, since=since)
        except SlackApiError as e:
            return failed(f"Slack answered {e.response.get('error') or e.response.status_code}")
    return ok(report.summary()) if report.complete else failed(report.summary())


def export_dataset() -> Outcome:
    """Write today's dataset of eligible 👍 answers (train and held-out splits) for inspection."""
    from training.dataset import build_dataset

    with _services() as services:
        target = services.settings.data_dir / "training" / "datasets" / "latest"
        summary = build_dataset(services.feedback, target, services.training_plan().dataset).as_json()
    return ok(f"{summary['eligible']} eligible answers: {summary['train']} to train on, "
              f"{summary['heldout']} held out, in {summary['path']}")


# How a training run's outcome reads in the job log.
_TRAINING_OUTCOMES = {"skipped": skipped, "refused": ok, "promoted": ok, "promotion_failed": failed}


def train_if_enough() -> Outcome:
    """Train, evaluate and maybe promote an adapter, if enough eligible examples are new since
    the last one (``LOREBOT_TRAIN_MIN_NEW_EXAMPLES``); otherwise a skipped run that says how many.

    With ``LOREBOT_TRAIN_COMMAND`` set, that command trains instead (a GPU Job that runs
    ``lorebot train --json``), and its exit status and last output line are the outcome."""
    settings = load_settings()
    if settings.train_command:
        return run_train_command(settings.train_command, timeout_s=settings.train_command_timeout_s)
    from training.pipeline import run_training

    with _services(settings) as services:
        result = run_training(services.feedback, services.registry, services.training_plan(),
                              work_dir=services.settings.data_dir / "training", progress=False)
    return _training_outcome(result.as_json())


def _training_outcome(result: dict) -> Outcome:
    """A training run's result (``lorebot train --json``) as the job log records it."""
    outcome, detail = result.get("outcome"), str(result.get("detail") or "")
    if outcome == "refused":
        detail = f"{result.get('version')} not promoted: {detail}"
    return _TRAINING_OUTCOMES.get(outcome, failed)(detail)


def run_train_command(command: str, *, timeout_s: float) -> Outcome:
    """Run ``command`` with ``sh -c``, its output (stdout and stderr) logged line by line as it
    comes. Exit 0 whose last line is ``lorebot train --json``'s result: that result's outcome;
    exit 0 otherwise: ok, with the last line; anything else: failed, with the last line."""
    log.info("training with LOREBOT_TRAIN_COMMAND: %s", command)
    try:
        process = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    except OSError as e:
        return failed(f"the training command could not start ({type(e).__name__}: {e})")
    last_line: list[str] = [""]
    # In the run's context, so the command's lines carry the run's request ID in the logs.
    reader = threading.Thread(target=contextvars.copy_context().run, args=(_log_lines, process.stdout, last_line),
                              name="lorebot-train-output", daemon=True)
    reader.start()
    try:
        status = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        reader.join(timeout=5)
        return failed(f"the training command did not finish within {timeout_s:.0f} s and was stopped"
                      + (f"; its last line: {last_line[0]}" if last_line[0] else ""))
    reader.join(timeout=5)
    line = last_line[0]
    if status != 0:
        return failed(f"the training command exited with status {status}" + (f": {line}" if line else ""))
    try:
        result = json.loads(line)
    except ValueError:
        result = None
    if isinstance(result, dict) and "outcome" in result:
        return _training_outcome(result)
    return ok(line or "the training command finished")


def _log_lines(stream, last_line: list[str]) -> None:
    for raw in stream:
        line = raw.rstrip()
        if line:
            log.info("train command: %s", line)
            last_line[0] = line
    stream.close()


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the command and whatever it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def reingest_sources() -> Outcome:
    """Ingest every configured source again (unchanged files cost nothing) and remove documents
    whose files are gone. A source that would widen who sees documents already indexed is not
    ingested (a failed run): the admin confirms once with ``lorebot ingest … --allow-widen``."""
    settings = load_settings()
    if not settings.sources:
        return skipped("no sources configured (LOREBOT_SOURCES)")
    lines, failures, refusals = [], [], []
    with _services(settings) as services:
        for number, source in enumerate(settings.sources, start=1):
            try:
                report = services.ingestor.ingest_paths([source.path], scope=source_scope(source),
                                                        source_url=source.source_url, prune=True)
            except WideningRefused as e:
                log.warning("source %d (%s) not re-ingested: %d documents would widen", number, source.path,
                            len(e.widened))
                refusals.append(_refusal(number, source, len(e.widened)))
                continue
            lines.append(f"{source.path}: {report.summary()}")
            failures += [f"{path}: {reason}" for path, reason in report.failed]
    if refusals:
        # Counts only: this detail is shown in the App Home, and the documents' paths may be private.
        return failed("; ".join(refusals + lines))
    if failures:
        return failed(f"{len(failures)} file{'s' if len(failures) != 1 else ''} failed, first {failures[0]}; "
                      + "; ".join(lines))
    return ok("; ".join(lines))


def _refusal(number: int, source: Source, count: int) -> str:
    """Why a source was not re-ingested, by its number in LOREBOT_SOURCES: no path in it."""
    option = "--public" if source.public else " ".join(f"--channel {c}" for c in source.channels)
    documents = "1 document" if count == 1 else f"{count} documents"
    return (f"LOREBOT_SOURCES entry {number} not re-ingested: {documents} would widen to {source_scope(source)}; "
            f"to confirm, run `lorebot ingest PATH {option} --allow-widen` once with that entry's path")


def source_scope(source: Source) -> Scope:
    return Scope.public() if source.public else Scope.channels(source.channels)


@contextmanager
def _services(settings: Settings | None = None) -> Iterator[Services]:
    services = build_services(settings or load_settings())
    try:
        yield services
    finally:
        services.close()


def _half(minutes: int) -> int:
    """Misfire grace for an interval job: a run more than half an interval late waits for the next."""
    return max(60, minutes * 30)
