"""``/metrics``: after people ask, vote and the model fails, the counts and timings an operator
scrapes say so; the scheduler's runs are counted on its own metrics server."""

from __future__ import annotations

import http.client
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk import WebClient

from bot.app import build_job_scheduler
from bot.config import load_settings
from bot.metrics import Metrics, start_metrics_server
from tests.fakes import slack_requests as sr
from tests.fakes.slack_api import FakeSlackAPI
from tests.scenarios.conftest import _no_proxies, lorebot, model_bot, slack, start_bot, stop_bot, tgi  # noqa: F401
from tests.scenarios.test_slack_bot import ON_CALL, VENDOR, mention
from tests.scenarios.test_slack_failures import broken_index
from training.feedback import FeedbackStore, Interaction, new_interaction_id
from training.jobs_log import JobLog
from training.database import open_engine
from training.schedule import JobSpec, start_with_jobs

HERE = "tests.bot.test_metrics"


def get(url: str, path: str) -> tuple[int, str, str]:
    """GET over plain HTTP (no proxy, whatever the environment says): status, content type, body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def scrape(url: str) -> tuple[str, dict[tuple[str, frozenset], float]]:
    """The exposition text at ``url``/metrics, and every sample by (name, labels)."""
    status, content_type, text = get(url, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def answer_message(running, channel: str, event: dict) -> tuple[str, str]:
    """The ts and interaction ID of the answer to ``event``."""
    running.settle()
    [reply] = [m for m in running.slack.messages(channel, thread_ts=event["ts"]) if m["ts"] != event["ts"]]
    return reply["ts"], reply["blocks"][-1]["elements"][0]["value"]


def test_the_metrics_endpoint_counts_answers_stages_fallbacks_and_votes(model_bot, tgi, slack):
    tgi.reply("Pages escalate to the secondary after ten minutes [1].", "Ten minutes, then the secondary [1].")
    found = mention(model_bot, ON_CALL, channel="C0ENGINEER")  # found, written by the model
    ts, interaction_id = answer_message(model_bot, "C0ENGINEER", found)
    mention(model_bot, VENDOR, channel="C0ENGINEER")  # finance's document: not found here
    model_bot.settle()
    tgi.set_down()
    mention(model_bot, ON_CALL, channel="C0ENGINEER")  # the model is down: quoted instead
    model_bot.settle()
    tgi.set_down(False)
    model_bot.sender.command(ON_CALL, channel_id="C0ENGINEER", user_id="U0ANNA",
                             response_url=slack.response_url("ask"))
    slack.wait_for("response_url:ask")
    for user in ("U0ANNA", "U0BORIS"):
        model_bot.sender.event(sr.reaction(True, "+1", user=user, channel="C0ENGINEER", item_ts=ts))
    model_bot.settle()
    model_bot.sender.event(sr.reaction(False, "+1", user="U0BORIS", channel="C0ENGINEER", item_ts=ts))
    model_bot.settle()
    model_bot.sender.block_action("vote_down", interaction_id, user_id="U0CARL", channel_id="C0ENGINEER",
                                  message_ts=ts, response_url=slack.response_url("vote"))
    model_bot.settle()

    text, samples = scrape(model_bot.server.url)

    assert 'lorebot_answers_total{outcome="found",surface="mention"} 2.0' in text
    assert value(samples, "lorebot_answers_total", outcome="not_found", surface="mention") == 1
    assert value(samples, "lorebot_answers_total", outcome="found", surface="slash") == 1
    assert value(samples, "lorebot_answers_total", outcome="error", surface="mention") == 0
    # Every answer was retrieved, timed end to end and delivered through Slack; three were written
    # (the not-found one never reached a generator); only the model's two streamed a first token.
    for stage, count in (("retrieval", 4), ("slack", 4), ("total", 4), ("generation", 3), ("first_token", 2)):
        assert value(samples, "lorebot_stage_seconds_count", stage=stage) == count, stage
        assert value(samples, "lorebot_stage_seconds_sum", stage=stage) > 0, stage
    assert value(samples, "lorebot_stage_seconds_bucket", stage="total", le="60.0") == 4
    assert value(samples, "lorebot_retrieval_top_similarity_count") == 4
    # The not-found question's best passage stayed under the relevance floor (0.39); the others did not.
    assert value(samples, "lorebot_retrieval_top_similarity_bucket", le="0.4") == 1
    assert value(samples, "lorebot_generation_fallbacks_total", reason="ServerUnavailable") == 1
    assert value(samples, "lorebot_generation_fallbacks_total", reason="empty") == 0
    assert value(samples, "lorebot_generations_total", generator="tgi", adapter="none") == 2
    assert value(samples, "lorebot_generations_total", generator="extractive", adapter="none") == 1
    assert value(samples, "lorebot_votes_total", value="up", via="reaction") == 2
    assert value(samples, "lorebot_votes_total", value="down", via="button") == 1
    assert value(samples, "lorebot_votes_total", value="up", via="button") == 0
    assert value(samples, "lorebot_vote_retractions_total", value="up", via="reaction") == 1
    assert 'lorebot_build_info{version="' in text
    # Nobody's words and no conversation is a label.
    assert "C0ENGINEER" not in text and "U0ANNA" not in text and "escalate" not in text


def test_an_answer_that_fails_counts_as_an_error(slack, real_embedder, tmp_path):
    data_dir = broken_index(tmp_path, real_embedder)

    running = start_bot(slack, data_dir, real_embedder, tmp_path)
    try:
        mention(running, ON_CALL, channel="C0ENGINEER")
        running.sender.command(ON_CALL, channel_id="C0ENGINEER", user_id="U0ANNA",
                               response_url=slack.response_url("ask"))
        slack.wait_for("response_url:ask")
        running.settle()
        _, samples = scrape(running.server.url)
    finally:
        stop_bot(running)
    assert value(samples, "lorebot_answers_total", outcome="error", surface="mention") == 1
    assert value(samples, "lorebot_answers_total", outcome="error", surface="slash") == 1
    assert value(samples, "lorebot_answers_total", outcome="found", surface="mention") == 0
    assert value(samples, "lorebot_stage_seconds_count", stage="total") == 0


def test_metrics_are_get_only_and_each_bot_counts_its_own(lorebot):
    status, _, _ = get(lorebot.server.url, "/metrics")
    assert status == 200
    connection = http.client.HTTPConnection("127.0.0.1", lorebot.server.server_address[1], timeout=10)
    connection.request("POST", "/metrics", body=b"", headers={"Content-Length": "0"})
    assert connection.getresponse().status == 404
    connection.close()
    # A second registry in the same process starts from zero: nothing global is shared.
    other = start_metrics_server(Metrics(), host="127.0.0.1", port=0)
    try:
        _, samples = scrape(other.url)
    finally:
        other.shutdown()
        other.server_close()
    assert value(samples, "lorebot_answers_total", outcome="found", surface="mention") == 0


# ----------------------------------------------------------------- the scheduler
# Job functions, referenced by text as the job store keeps them.


def tidy() -> str:
    return "tidied"


def explode() -> None:
    raise RuntimeError("the disk is full")


def reconcile_from(slack_url: str, token: str, database_url: str) -> str:
    """The reconcile job's work, against the given Slack and database (bot.jobs reads settings)."""
    from bot.reconcile import reconcile_votes

    engine = open_engine(database_url)
    try:
        since = datetime.now(timezone.utc) - timedelta(days=1)
        return reconcile_votes(WebClient(base_url=slack_url, token=token), FeedbackStore(engine), since=since).summary()
    finally:
        engine.dispose()


def wait_for_runs(job_log: JobLog, job: str, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len([r for r in job_log.runs(job) if r.finished_at is not None]) < n:
        assert time.monotonic() < deadline, f"{job} did not run {n} times in {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def scheduler_setup(tmp_path):
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/lorebot.db")
    metrics = Metrics()
    runner = build_job_scheduler(settings, metrics, blocking=False)
    server = start_metrics_server(metrics, host="127.0.0.1", port=0)
    yield settings, metrics, runner, server
    if runner.running:
        runner.shutdown(wait=True)
    server.shutdown()
    server.server_close()


def test_the_scheduler_counts_job_runs_by_outcome_on_its_metrics_server(scheduler_setup):
    settings, metrics, runner, server = scheduler_setup
    weekly = {"day_of_week": "sun", "hour": 3, "minute": 0}
    specs = [JobSpec("tidy", f"{HERE}:tidy", "cron", weekly), JobSpec("explode", f"{HERE}:explode", "cron", weekly,
                                                                      exclusive=True)]
    metrics.expect_jobs(spec.id for spec in specs)
    start_with_jobs(runner, specs)
    now = datetime.now(timezone.utc)
    runner.modify_job("tidy", next_run_time=now)
    runner.modify_job("explode", next_run_time=now)
    engine = open_engine(settings.database_url)
    try:
        wait_for_runs(JobLog(engine), "tidy", 1)
        wait_for_runs(JobLog(engine), "explode", 1)
    finally:
        engine.dispose()
    time.sleep(0.2)  # the run is recorded, then counted

    text, samples = scrape(server.url)
    assert 'lorebot_job_runs_total{job="tidy",outcome="ok"} 1.0' in text
    assert value(samples, "lorebot_job_runs_total", job="explode", outcome="failed") == 1
    assert value(samples, "lorebot_job_runs_total", job="tidy", outcome="skipped") == 0
    assert value(samples, "lorebot_job_seconds_count", job="tidy") == 1
    assert value(samples, "lorebot_job_seconds_count", job="explode") == 1
    assert get(server.url, "/healthz")[0] == 200 and get(server.url, "/nothing")[0] == 404


def test_votes_the_reconcile_job_casts_are_counted_by_the_scheduler(scheduler_setup):
    settings, metrics, runner, server = scheduler_setup
    engine = open_engine(settings.database_url)
    with FakeSlackAPI() as slack:
        client = WebClient(base_url=slack.url, token=slack.bot_token)
        feedback = FeedbackStore(engine)
        interaction_id = new_interaction_id()
        feedback.record_interaction(Interaction(
            interaction_id=interaction_id, channel_id="C0GENERAL", user_id="U0ASKER", surface="mention",
            asked="days off?", question="How many days off?", answer="18 days [1].", found=True,
            generator="extractive"))
        ts = client.chat_postMessage(channel="C0GENERAL", text="18 days [1].")["ts"]
        feedback.link_message(interaction_id, channel_id="C0GENERAL", ts=ts)
        slack.react("C0GENERAL", ts, "+1", user="U0ANNA")  # its reaction_added event never arrived

        spec = JobSpec("reconcile", f"{HERE}:reconcile_from", "interval", {"minutes": 15}, exclusive=True,
                       kwargs={"slack_url": slack.url, "token": slack.bot_token, "database_url": settings.database_url})
        start_with_jobs(runner, [spec])
        runner.modify_job("reconcile", next_run_time=datetime.now(timezone.utc))
        wait_for_runs(JobLog(engine), "reconcile", 1)
        time.sleep(0.2)
    engine.dispose()
    _, samples = scrape(server.url)
    assert value(samples, "lorebot_votes_total", value="up", via="reconcile") == 1
    assert value(samples, "lorebot_job_runs_total", job="reconcile", outcome="ok") == 1
