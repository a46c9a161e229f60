"""Structured logs: with LOREBOT_LOG_FORMAT=json every line is one JSON object carrying the ID of
the request it belongs to; no secret, and nobody's words, at info level."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import datetime, timezone

import pytest

from bot.app import build_job_scheduler
from bot.config import load_settings
from bot.logs import JsonFormatter, TextFormatter, configure_logging, request_context
from bot.metrics import Metrics
from tests.fakes import slack_requests as sr
from tests.scenarios.conftest import (  # noqa: F401
    BOT_TOKEN,
    BOT_USER,
    FAST_GENERATION,
    _no_proxies,
    slack,
    start_bot,
    stop_bot,
    tgi,
)
from tests.scenarios.test_slack_bot import ON_CALL, VENDOR
from training.database import open_engine
from training.jobs_log import JobLog
from training.schedule import JobSpec, start_with_jobs

HERE = "tests.bot.test_logging"


@pytest.fixture
def log_lines(caplog):
    """What a plain stderr handler (the one the CLI sets up) writes once lorebot configured it,
    as a function returning the lines so far."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [line for line in stream.getvalue().splitlines() if line]
    root.removeHandler(handler)


def ask(running, text: str, event_id: str | None = None, **kwargs) -> dict:
    event = sr.app_mention(f"<@{BOT_USER}> {text}", channel="C0ENGINEER", **kwargs)
    assert running.sender.event(event, event_id=event_id).status == 200
    return event


def test_json_lines_carry_the_request_id_and_never_the_question_or_a_token(
        slack, tgi, handbook_data_dir, real_embedder, tmp_path, monkeypatch, log_lines):
    monkeypatch.setenv("LOREBOT_LOG_FORMAT", "json")
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, tgi_url=tgi.url,
                        adapters_dir=tmp_path / "adapters", **FAST_GENERATION)
    try:
        assert running.services.settings.log_format == "json"
        configure_logging(running.services.settings.log_format)
        tgi.set_down()  # retries, a fallback: several lines for one question
        ask(running, ON_CALL, "Ev0ONCALL")
        running.settle()
        tgi.set_down(False)
        ask(running, VENDOR, "Ev0VENDOR")
        running.finish()
        logging.getLogger("some.library").info("connecting with token %s", BOT_TOKEN)
    finally:
        stop_bot(running)

    entries = [json.loads(line) for line in log_lines()]  # every line is a JSON object
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(e) for e in entries)
    by_request: dict[str | None, list[dict]] = {}
    for entry in entries:
        by_request.setdefault(entry["request_id"], []).append(entry)
    on_call = by_request["Ev0ONCALL"]
    assert {e["logger"] for e in on_call} >= {"bot.generation.fallback", "bot.replies"}
    [answered] = [e for e in on_call if e["message"].startswith("answered")]
    assert answered["level"] == "INFO" and "found" in answered["message"] and "C0ENGINEER" in answered["message"]
    [not_found] = [e for e in by_request["Ev0VENDOR"] if e["message"].startswith("answered")]
    assert "not found" in not_found["message"]
    datetime.fromisoformat(answered["ts"])

    everything = "\n".join(log_lines())
    assert BOT_TOKEN not in everything and "[redacted]" in everything
    for words in ("page escalates", "secondary on-call", "drone survey", "contractor"):
        assert words not in everything


def test_info_records_on_the_answer_path_hold_no_message_text(slack, handbook_data_dir, real_embedder, tmp_path,
                                                                caplog):
    caplog.set_level(logging.INFO)
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path)
    try:
        first = ask(running, ON_CALL)
        running.settle()
        ask(running, "and what about weekends?", thread_ts=first["ts"])  # the thread is read too
        running.sender.command(VENDOR, channel_id="C0FINANCE", user_id="U0ANNA",
                               response_url=slack.response_url("ask"))
        slack.wait_for("response_url:ask")
        running.finish()
    finally:
        stop_bot(running)
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any(r.getMessage().startswith("answered a slash in C0FINANCE") for r in shown)
    assert any(r.getMessage().startswith("answered a mention in C0ENGINEER") for r in shown)
    text = "\n".join(r.getMessage() for r in shown)
    for words in ("escalates", "weekends", "drone", "contractor", "Incident Response Runbook"):
        assert words not in text


def test_text_lines_name_the_request_and_tracebacks_are_scrubbed():
    from bot.redaction import install_redaction

    install_redaction([BOT_TOKEN])
    record = logging.LogRecord("bot.replies", logging.ERROR, __file__, 1, "answering %s failed", ("123.4",), None)
    try:
        raise RuntimeError(f"Slack said no to {BOT_TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    with request_context("Ev0TEXT"):
        text = TextFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
    assert "bot.replies [Ev0TEXT]: answering 123.4 failed" in text and "Traceback" in text
    assert BOT_TOKEN not in text and BOT_TOKEN not in json.dumps(entry)
    assert entry["request_id"] == "Ev0TEXT" and entry["level"] == "ERROR"
    assert "RuntimeError: Slack said no to [redacted]" in entry["exc_info"]
    outside = TextFormatter().format(logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None))
    assert outside.endswith(" INFO x: hello")


# ----------------------------------------------------------------- the scheduler


def say_hello() -> None:
    logging.getLogger("tests.job").info("hello from a job")


def test_a_scheduled_run_logs_under_its_job_and_run(tmp_path, log_lines):
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/lorebot.db", log_format="json")
    configure_logging(settings.log_format)
    runner = build_job_scheduler(settings, Metrics(), blocking=False)
    engine = open_engine(settings.database_url)
    try:
        start_with_jobs(runner, [JobSpec("hello", f"{HERE}:say_hello", "cron", {"hour": 3, "minute": 0})])
        runner.modify_job("hello", next_run_time=datetime.now(timezone.utc))
        deadline = time.monotonic() + 20
        while not [r for r in JobLog(engine).runs("hello") if r.finished_at]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [run] = JobLog(engine).runs("hello")
    finally:
        runner.shutdown(wait=True)
        engine.dispose()
    [entry] = [json.loads(line) for line in log_lines() if "hello from a job" in line]
    assert entry["request_id"] == f"hello:{run.id}" and entry["logger"] == "tests.job"
