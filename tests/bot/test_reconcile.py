"""Reconciling votes with Slack: a missed reaction event loses no vote, and nothing counts twice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient

from bot.reconcile import reconcile_votes
from bot.slack_retries import slack_retry_handlers
from bot.votes import vote_by_button, vote_by_reaction
from tests.fakes.slack_api import FakeSlackAPI
from training.feedback import DOWN, UP, FeedbackStore, Interaction, new_interaction_id

CHANNEL = "C0GENERAL"
WEEK_AGO = datetime.now(timezone.utc) - timedelta(days=7)


@pytest.fixture
def slack():
    with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
def client(slack):
    # As the bot builds it: rate limits are waited out by the client's retry handlers.
    return WebClient(base_url=slack.url, token=slack.bot_token, retry_handlers=slack_retry_handlers())


@pytest.fixture
def feedback(open_database):
    return FeedbackStore(open_database())


def an_answer(client: WebClient, feedback: FeedbackStore, *, messages: int = 1, age: timedelta = timedelta(0)) -> tuple[str, list[str]]:
    """An answer the bot posted (in ``messages`` messages) and recorded, as the listeners do."""
    interaction_id = new_interaction_id()
    feedback.record_interaction(Interaction(
        interaction_id=interaction_id, channel_id=CHANNEL, user_id="U0ASKER", surface="mention",
        asked="how many days off?", question="How many days off do I get?", answer="18 days [1].", found=True,
        generator="extractive", created_at=datetime.now(timezone.utc) - age,
    ))
    posted = [client.chat_postMessage(channel=CHANNEL, text=f"18 days [1]. (part {n})")["ts"] for n in range(messages)]
    for ts in posted:
        feedback.link_message(interaction_id, channel_id=CHANNEL, ts=ts)
    return interaction_id, posted


def reaction_event(name: str, user: str, ts: str, *, at: float | None = None) -> dict:
    return {"type": "reaction_added", "user": user, "reaction": name, "item_user": "U0LOREBOT",
            "item": {"type": "message", "channel": CHANNEL, "ts": ts}, "event_ts": f"{at or time.time():.6f}"}


def votes(feedback: FeedbackStore, interaction_id: str) -> dict[str, tuple[int, str]]:
    return {user: (vote.value, vote.via) for user, vote in feedback.votes_on(interaction_id).items()}


def test_a_reaction_whose_event_never_arrived_becomes_a_vote(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    slack.react(CHANNEL, ts, "thumbsdown::skin-tone-3", user="U0BORIS")
    slack.react(CHANNEL, ts, "tada", user="U0CARLA")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction"), "U0BORIS": (DOWN, "reaction")}
    assert (report.answers, report.messages, report.cast, report.retracted) == (1, 1, 2, 0)
    [call] = slack.calls("reactions.get")
    assert call.params["full"] in ("1", "true", True), "every user of a reaction, not a truncated list"


def test_a_reaction_removed_while_events_were_missed_takes_its_vote_back(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    vote_by_reaction(feedback, reaction_event("+1", "U0ANNA", ts), added=True)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA", added=False)  # its reaction_removed is lost

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {}
    assert (report.cast, report.retracted) == (0, 1)
    assert feedback.stats().upvotes == 0


def test_a_thumb_switched_while_events_were_missed_switches_the_vote(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    vote_by_reaction(feedback, reaction_event("+1", "U0ANNA", ts), added=True)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA", added=False)
    slack.react(CHANNEL, ts, "-1", user="U0ANNA")

    reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (DOWN, "reaction")}


def test_nothing_doubles_when_the_events_did_arrive_or_arrive_late(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    vote_by_reaction(feedback, reaction_event("+1", "U0ANNA", ts), added=True)
    slack.react(CHANNEL, ts, "+1", user="U0BORIS")
    added_at = time.time()  # Boris's event is still in Slack's retry queue

    first = reconcile_votes(client, feedback, since=WEEK_AGO)
    again = reconcile_votes(client, feedback, since=WEEK_AGO)
    late = vote_by_reaction(feedback, reaction_event("+1", "U0BORIS", ts, at=added_at), added=True)

    assert (first.cast, again.cast, again.retracted) == (1, 0, 0)
    assert not late, "the late event is older than the reconciled vote: ignored"
    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction"), "U0BORIS": (UP, "reaction")}
    assert feedback.stats().upvotes == 2


def test_real_events_after_a_reconciled_vote_still_count(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    reconcile_votes(client, feedback, since=WEEK_AGO)

    removed = reaction_event("+1", "U0ANNA", ts, at=time.time() + 1)
    assert vote_by_reaction(feedback, removed, added=False)
    assert votes(feedback, answer) == {}

    assert vote_by_button(feedback, interaction_id=answer, user_id="U0ANNA", up=False, at=time.time() + 2)
    assert votes(feedback, answer) == {"U0ANNA": (DOWN, "button")}


def test_button_votes_are_left_as_they_are(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    vote_by_button(feedback, interaction_id=answer, user_id="U0ANNA", up=False, at=time.time())
    vote_by_button(feedback, interaction_id=answer, user_id="U0BORIS", up=True, at=time.time())
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")  # a thumb up beside her 👎 click

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (DOWN, "button"), "U0BORIS": (UP, "button")}
    assert (report.cast, report.retracted) == (0, 0)


def test_the_bots_own_reactions_and_other_emoji_are_not_votes(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    client.reactions_add(channel=CHANNEL, timestamp=ts, name="+1")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {}
    assert report.cast == 0
    assert len(slack.calls("auth.test")) == 1, "the bot's user ID is asked for once per pass"


def test_a_thumb_on_any_message_of_a_long_answer_counts_once(slack, client, feedback):
    answer, (first, second) = an_answer(client, feedback, messages=2)
    slack.react(CHANNEL, second, "+1", user="U0ANNA")
    slack.react(CHANNEL, first, "thumbsup", user="U0ANNA")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction")}
    assert (report.answers, report.messages, report.cast) == (1, 2, 1)


def test_both_thumbs_and_no_vote_to_go_by_is_left_alone(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    slack.react(CHANNEL, ts, "-1", user="U0ANNA")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {}
    assert report.ambiguous == 1


def test_a_deleted_answer_message_is_skipped_and_counted_and_its_votes_kept(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    vote_by_reaction(feedback, reaction_event("+1", "U0ANNA", ts), added=True)
    client.chat_delete(channel=CHANNEL, ts=ts)
    kept, (kept_ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, kept_ts, "+1", user="U0BORIS")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction")}
    assert votes(feedback, kept) == {"U0BORIS": (UP, "reaction")}
    assert (report.missing, report.cast, report.retracted) == (1, 1, 0)
    assert "1 deleted" in report.summary()


def test_rate_limits_are_waited_out(slack, client, feedback):
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")
    slack.fail("reactions.get", status=429, retry_after=0)

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction")}
    assert len(slack.calls("reactions.get")) == 2
    assert report.complete


def test_a_rate_limit_that_does_not_lift_stops_the_pass_and_says_so(slack, client, feedback):
    an_answer(client, feedback)
    slack.fail("reactions.get", status=429, retry_after=0, times=10)

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert not report.complete and "ratelimited" in report.summary()
    assert len(slack.calls("reactions.get")) == 5, "one call and the client's four retries, then it stops"


def test_only_answers_given_since_the_window_opened_are_checked(slack, client, feedback):
    old, (old_ts,) = an_answer(client, feedback, age=timedelta(days=30))
    slack.react(CHANNEL, old_ts, "+1", user="U0ANNA")

    report = reconcile_votes(client, feedback, since=WEEK_AGO)

    assert report.answers == 0 and slack.calls("reactions.get") == []
    assert votes(feedback, old) == {}


def test_a_click_landing_mid_pass_is_never_overwritten_or_removed(client, feedback):
    # What the pass relies on when a click lands between its read of the votes and its write:
    # the store only replaces or removes reaction votes, checked in the same statement.
    answer, _ = an_answer(client, feedback)
    vote_by_button(feedback, interaction_id=answer, user_id="U0ANNA", up=False, at=100.0)

    assert not feedback.cast_vote(answer, user_id="U0ANNA", value=UP, via="reaction", at=200.0,
                                  replacing=("reaction",))
    assert not feedback.retract_vote(answer, user_id="U0ANNA", value=DOWN, at=200.0, via="reaction")
    assert votes(feedback, answer) == {"U0ANNA": (DOWN, "button")}


# ----------------------------------------------------------------- the scheduled job


def test_the_scheduled_job_reconciles_with_the_configured_slack_and_database(slack, client, tmp_path, monkeypatch):
    from bot.jobs import reconcile_votes as reconcile_job
    from training.database import default_database_url, open_engine

    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
    engine = open_engine(default_database_url(tmp_path))
    feedback = FeedbackStore(engine)
    answer, (ts,) = an_answer(client, feedback)
    slack.react(CHANNEL, ts, "+1", user="U0ANNA")

    outcome = reconcile_job()

    assert outcome.outcome == "ok" and "1 vote cast" in outcome.detail
    assert votes(feedback, answer) == {"U0ANNA": (UP, "reaction")}
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert reconcile_job().outcome == "skipped"
    engine.dispose()


def test_the_scheduler_runs_its_jobs_as_configured(tmp_path):
    from bot.config import load_settings
    from bot.jobs import job_specs
    from training.schedule import build_scheduler, ensure_jobs

    settings = load_settings(data_dir=tmp_path, LOREBOT_TRAIN_SCHEDULE="30 4 * * sat")
    scheduler = build_scheduler(f"sqlite:///{tmp_path}/lorebot.db", blocking=False)
    scheduler.start(paused=True)
    try:
        ensure_jobs(scheduler, job_specs(settings))
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown()

    assert set(jobs) == {"reconcile", "export", "train", "reingest", "slack-sync", "unit-vectors"}
    assert {job.executor for job in jobs.values()} == {"exclusive"}
    assert jobs["reconcile"].trigger.interval == timedelta(minutes=15)
    assert jobs["reingest"].trigger.interval == timedelta(hours=1)
    assert jobs["slack-sync"].trigger.interval == timedelta(minutes=30)
    assert jobs["slack-sync"].func_ref == "bot.jobs:sync_slack_history"
    assert jobs["unit-vectors"].trigger.interval == timedelta(hours=24)
    assert jobs["unit-vectors"].func_ref == "bot.jobs:prune_unit_vectors"
    export, train = jobs["export"].next_run_time, jobs["train"].next_run_time
    assert (export.hour, export.minute) == (2, 0) and export - datetime.now(timezone.utc) <= timedelta(days=1)
    assert (train.weekday(), train.hour, train.minute) == (5, 4, 30)
    assert jobs["train"].func_ref == "bot.jobs:train_if_enough"
