"""A listed channel's history stays current as people post, edit and delete: signed events from
"Slack" to the real Bolt app, the fake Slack Web API holding the messages, and the answers asked
of the same running lorebot (real embedding model, embedded index)."""

from __future__ import annotations

import time

import pytest

from bot.answering import answer_question
from knowledge.access import Audience
from tests.fakes import slack_requests as sr
from tests.scenarios.conftest import BOT_USER, start_bot, stop_bot

QUESTION = "how often is the staging database password rotated?"


@pytest.fixture
def running(slack, real_embedder, tmp_path, request):
    settings = getattr(request, "param", {})
    bot = start_bot(slack, tmp_path / "data", real_embedder, tmp_path, answer_unit_vectors=False, **settings)
    yield bot
    stop_bot(bot)


def listed(running, *channels: str, public: bool = False) -> None:
    """``lorebot ingest-slack`` on the running bot's own index and database."""
    report = running.bot.deps.slack_sync.history.run(list(channels), public=public)
    assert report.ok, report.summary()


def ask(running, channel: str, question: str = QUESTION):
    return answer_question(question, Audience.for_conversation(channel), running.services.answer_deps)


def post(running, channel: str, text: str, *, user: str = "U0ANA", thread_ts: str | None = None) -> str:
    ts = running.slack.add_message(channel, user=user, text=text, thread_ts=thread_ts)
    running.sender.event(sr.message(text, channel=channel, user=user, ts=ts, thread_ts=thread_ts))
    running.settle()
    return ts


def test_a_new_message_answers_an_edit_replaces_it_and_a_deletion_removes_it(running, slack) -> None:
    slack.add_channel("C0ENG", name="eng")
    welcome = slack.add_message("C0ENG", user="U0BEN", text="Welcome to the engineering channel.")
    listed(running, "C0ENG")
    assert not ask(running, "C0ENG").found

    ts = post(running, "C0ENG", "The staging database password is rotated every 90 days by the ops team.")
    answer = ask(running, "C0ENG")
    assert answer.found and "90 days" in answer.text
    # It joined the conversation it continues: cited by that conversation's first message.
    assert answer.citations[0].source.endswith(f"/archives/C0ENG/p{welcome.replace('.', '')}")

    edited = "The staging database password is rotated every 30 days by the ops team."
    slack.edit_message("C0ENG", ts, edited)
    running.sender.event(sr.message_changed(edited, channel="C0ENG", ts=ts, user="U0ANA",
                                            previous_text="… every 90 days …"))
    running.settle()
    answer = ask(running, "C0ENG")
    assert "30 days" in answer.text and "90 days" not in answer.text

    slack.delete_message("C0ENG", ts)
    running.sender.event(sr.message_deleted(channel="C0ENG", ts=ts, user="U0ANA"))
    running.settle()
    assert "30 days" not in ask(running, "C0ENG").text


def test_a_message_deleted_in_slack_no_longer_answers_anything(running, slack) -> None:
    slack.add_channel("C0ENG", name="eng")
    parent = slack.add_message("C0ENG", user="U0ANA", text="Does anyone know the staging DB password policy?")
    reply = slack.add_message("C0ENG", user="U0BEN", thread_ts=parent,
                              text="The staging database password is rotated every 90 days by the ops team.")
    listed(running, "C0ENG", public=True)
    assert ask(running, "C0ENG").found and ask(running, "C0SALES").found

    slack.delete_message("C0ENG", reply)
    running.sender.event(sr.message_deleted(channel="C0ENG", ts=reply, thread_ts=parent, user="U0BEN"))
    running.settle()

    for channel in ("C0ENG", "C0SALES", "D0DIRECT"):
        answer = ask(running, channel)
        assert "90 days" not in answer.text and all("90 days" not in c.snippet for c in answer.citations)


def test_a_public_channel_made_private_narrows_at_once(running, slack) -> None:
    slack.add_channel("C0ALL", name="general")
    slack.add_message("C0ALL", user="U0BEN", text="The staging database password is rotated every 90 days.")
    listed(running, "C0ALL", public=True)
    assert ask(running, "C0SALES").found

    slack.add_channel("C0ALL", name="general", is_private=True)
    running.sender.event({"type": "channel_converted_to_private", "channel": "C0ALL", "user": "U0ANA",
                          "event_ts": sr.next_ts()})
    running.settle()

    assert not ask(running, "C0SALES").found and not ask(running, "D0DIRECT").found
    assert ask(running, "C0ALL").found
    assert running.bot.deps.slack_sync.history.sync_state.cursor("C0ALL").public is False


@pytest.mark.parametrize("running", [{}, {"slack_keep_archived": True}], indirect=True, ids=["remove", "keep"])
def test_an_archived_channel_is_removed_unless_kept_and_then_still_scoped(running, slack) -> None:
    slack.add_channel("C0ENG", name="eng")
    slack.add_message("C0ENG", user="U0BEN", text="The staging database password is rotated every 90 days.")
    listed(running, "C0ENG")

    running.sender.event({"type": "channel_archive", "channel": "C0ENG", "user": "U0ANA", "event_ts": sr.next_ts()})
    running.settle()

    kept = running.services.settings.slack_keep_archived
    assert ask(running, "C0ENG").found is kept
    assert not ask(running, "C0SALES").found


@pytest.mark.parametrize("event_type", ["member_left_channel", "channel_left"])
def test_a_channel_lorebot_is_removed_from_stops_answering_at_once(running, slack, event_type) -> None:
    slack.add_channel("C0ENG", name="eng")
    slack.add_message("C0ENG", user="U0BEN", text="The staging database password is rotated every 90 days.")
    listed(running, "C0ENG")
    # Someone else leaving changes nothing.
    running.sender.event({"type": "member_left_channel", "user": "U0ANA", "channel": "C0ENG", "channel_type": "C",
                          "event_ts": sr.next_ts()})
    running.settle()
    assert ask(running, "C0ENG").found

    slack.add_channel("C0ENG", name="eng", is_member=False)
    removed = {"type": event_type, "channel": "C0ENG", "event_ts": sr.next_ts()}
    if event_type == "member_left_channel":
        removed |= {"user": BOT_USER, "channel_type": "C"}
    running.sender.event(removed)
    running.settle()

    assert not ask(running, "C0ENG").found
    assert running.bot.deps.slack_sync.history.sync_state.channels() == []


def test_unlisted_channels_are_ignored_and_questions_are_still_answered(running, slack) -> None:
    slack.add_channel("C0ENG", name="eng")
    slack.add_message("C0ENG", user="U0BEN", text="Lunch is at noon.")
    listed(running, "C0ENG")
    slack.reset_calls()

    post(running, "C0OTHER", "The staging database password is rotated every 90 days.")
    assert not ask(running, "C0OTHER").found
    assert slack.calls("conversations.replies") == [] and slack.calls("conversations.history") == []

    running.sender.event(sr.app_mention(f"<@{BOT_USER}> {QUESTION}", channel="C0ENG"))
    running.sender.event(sr.message(f"<@{BOT_USER}> {QUESTION}", channel="C0ENG"))  # the same post, as a message
    running.finish()
    assert len(slack.calls("chat.postMessage")) == 1  # answered once; the question itself is never indexed
    assert QUESTION not in "\n".join(d.title for d in running.services.store.list_documents())


@pytest.mark.parametrize("running", [{"answer_workers": 1}], indirect=True)
def test_a_slow_history_update_never_holds_a_question_back(running, slack) -> None:
    """History updates run apart from the answer workers: one waiting on Slack (a 429's
    Retry-After, a slow page) does not keep the only answer worker from answering."""
    from tests.scenarios.test_slack_bot import mention

    slack.add_channel("C0ENG", name="eng")
    slack.add_message("C0ENG", user="U0BEN", text="The staging database password is rotated every 90 days.")
    listed(running, "C0ENG")
    slack.delay("conversations.history", 5.0)  # the update's read of the messages around the new one
    ts = running.slack.add_message("C0ENG", user="U0ANA", text="Backups of staging run nightly at 02:00.")
    running.sender.event(sr.message("Backups of staging run nightly at 02:00.", channel="C0ENG", user="U0ANA", ts=ts))
    mention(running, "how often is the staging database password rotated?", channel="C0ENG")

    deadline = time.monotonic() + 30
    while not any("90 days" in str(c.params) for m in ("chat.postMessage", "chat.update") for c in slack.calls(m)):
        assert time.monotonic() < deadline, "no answer"
        time.sleep(0.05)
    # The answer was delivered while the history update still waited on Slack (a call is recorded
    # once answered); before, the one answer worker ran the update first.
    assert not slack.calls("conversations.history")[1:], "the answer waited for the history update"
    running.settle()
    slack.delay("conversations.history", 0)
    assert len(slack.calls("conversations.history")) >= 2  # and the update did finish
