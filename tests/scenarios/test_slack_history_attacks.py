# ruff: noqa: F811  (pytest fixtures imported from the module they are defined in)
"""A listed channel's history attacked through the running bot: signed events to the real Bolt app,
the fake Slack Web API holding the messages, answers asked of the same lorebot (real embedding
model, embedded index). A private channel's thread must answer nowhere else, whatever the order
in which Slack's events arrive or go missing."""

from __future__ import annotations

from tests.fakes import slack_requests as sr
from tests.scenarios.test_slack_history_sync import QUESTION, ask, listed, post, running  # noqa: F401


def test_a_thread_posted_after_a_missed_conversion_to_private_answers_only_its_channel(running, slack) -> None:
    slack.add_channel("C0ALL", name="general")
    slack.add_message("C0ALL", user="U0BEN", text="Welcome to general, say hi.")
    listed(running, "C0ALL", public=True)

    slack.add_channel("C0ALL", name="general", is_private=True)  # channel_converted_to_private never arrives
    parent = post(running, "C0ALL", "Does anyone know the staging DB password policy?")
    post(running, "C0ALL", "The staging database password is rotated every 90 days by the ops team.",
         user="U0BEN", thread_ts=parent)

    assert ask(running, "C0ALL").found
    for elsewhere in ("C0SALES", "D0DIRECT"):
        assert "90 days" not in ask(running, elsewhere).text
    refused = running.bot.deps.slack_sync.history.run(["C0ALL"], public=True)  # re-listed --public: refused
    assert [c for c, _ in refused.failed] == ["C0ALL"]
    assert "90 days" not in ask(running, "C0SALES").text


def test_messages_after_an_archive_change_nothing(running, slack) -> None:
    slack.add_channel("C0ENG", name="eng")
    slack.add_message("C0ENG", user="U0BEN", text="Lunch is at noon.")
    listed(running, "C0ENG")
    running.sender.event({"type": "channel_archive", "channel": "C0ENG", "user": "U0ANA", "event_ts": sr.next_ts()})
    running.settle()
    slack.add_channel("C0ENG", name="eng", is_archived=True)
    slack.reset_calls()

    post(running, "C0ENG", "The staging database password is rotated every 90 days by the ops team.")

    assert not ask(running, "C0ENG").found
    assert slack.calls("conversations.history") == [] and slack.calls("conversations.replies") == []
    assert running.services.store.list_documents() == []
