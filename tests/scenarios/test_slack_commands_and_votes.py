"""Votes, the slash command and App Home, through the real Bolt app and a fake Slack."""

from __future__ import annotations

from tests.fakes import slack_requests as sr
from tests.scenarios.conftest import BOT_USER
from tests.scenarios.test_slack_bot import ON_CALL, VENDOR, action_ids, mention, texts


def answered(lorebot, question: str = ON_CALL, channel: str = "C0ENGINEER") -> tuple[str, str]:
    """Ask by mention; the answer message's ts and its interaction ID."""
    mention(lorebot, question, channel=channel)
    lorebot.settle()  # the answer is posted and linked to its interaction
    assert len(lorebot.slack.calls("chat.postMessage")) == 1
    # The message as it ends: on a busy machine a "working" placeholder is posted first and
    # updated into the answer, so the first post's blocks may be the placeholder's.
    answer = lorebot.slack.messages(channel)[-1]
    return answer["ts"], answer["blocks"][-1]["elements"][0]["value"]


def react(lorebot, name: str, *, user: str, ts: str, added: bool = True, channel: str = "C0ENGINEER"):
    response = lorebot.sender.event(sr.reaction(added, name, user=user, channel=channel, item_ts=ts))
    assert response.status == 200
    lorebot.settle()


def test_reactions_are_votes_once_per_person_and_removal_retracts(lorebot):
    ts, _ = answered(lorebot)
    react(lorebot, "+1", user="U0ANNA", ts=ts)
    react(lorebot, "thumbsup::skin-tone-4", user="U0ANNA", ts=ts)  # the same person again: still one vote
    react(lorebot, "thumbsup::skin-tone-2", user="U0BORIS", ts=ts)
    react(lorebot, "-1", user="U0CARL", ts=ts)
    react(lorebot, "tada", user="U0DANA", ts=ts)  # not a vote
    stats = lorebot.feedback.stats()
    assert (stats.upvotes, stats.downvotes) == (2, 1)

    react(lorebot, "+1", user="U0BORIS", ts=ts, added=False)  # Boris takes his back
    stats = lorebot.feedback.stats()
    assert (stats.upvotes, stats.downvotes) == (1, 1)


def test_reactions_by_the_bot_or_on_other_messages_are_not_votes(lorebot, slack):
    ts, _ = answered(lorebot)
    other = slack.add_message("C0ENGINEER", user="U0ANNA", text="nice")
    react(lorebot, "+1", user=BOT_USER, ts=ts)
    react(lorebot, "+1", user="U0BORIS", ts=other)
    react(lorebot, "+1", user="U0BORIS", ts="1690000000.000001")  # a message lorebot never saw
    stats = lorebot.feedback.stats()
    assert (stats.upvotes, stats.downvotes) == (0, 0)


def test_a_retried_reaction_event_counts_once_and_a_later_button_click_wins(lorebot):
    ts, interaction_id = answered(lorebot)
    event = sr.reaction(True, "+1", user="U0ANNA", channel="C0ENGINEER", item_ts=ts)
    lorebot.sender.event(event, event_id="Ev0REACT")
    lorebot.sender.event(event, event_id="Ev0REACT", retry_num=1)
    lorebot.settle()
    assert lorebot.feedback.stats().upvotes == 1

    response = lorebot.sender.block_action("vote_down", interaction_id, user_id="U0ANNA", channel_id="C0ENGINEER",
                                           message_ts=ts, response_url=lorebot.slack.response_url("vote"))
    assert response.status == 200
    lorebot.settle()
    stats = lorebot.feedback.stats()
    assert (stats.upvotes, stats.downvotes) == (0, 1)
    [thanks] = lorebot.slack.wait_for("response_url:vote")
    assert "counted" in thanks.params["text"]
    # Removing the old 👍 reaction does not erase the 👎 she clicked afterwards.
    react(lorebot, "+1", user="U0ANNA", ts=ts, added=False)
    assert lorebot.feedback.stats().downvotes == 1


def test_the_slash_command_answers_only_the_asker_who_can_share_it(lorebot, slack):
    url = slack.response_url("ask")
    response = lorebot.sender.command(ON_CALL, channel_id="C0ENGINEER", user_id="U0ANNA", response_url=url)
    assert response.status == 200
    assert response.json()["response_type"] == "ephemeral"  # "working on it", seen only by the asker
    [answer] = slack.wait_for("response_url:ask")
    assert answer.params["response_type"] == "ephemeral"
    assert "On-Call and Incident Response Runbook" in texts(answer.params)
    assert action_ids(answer.params) == ["share_answer", "vote_up", "vote_down"]
    assert slack.calls("chat.postMessage") == []  # nothing in the channel yet

    interaction_id = answer.params["blocks"][-1]["elements"][0]["value"]
    lorebot.sender.block_action("share_answer", interaction_id, user_id="U0ANNA", channel_id="C0ENGINEER",
                                message_ts=None, response_url=url)
    [shared] = slack.wait_for("chat.postMessage")
    assert shared.params["channel"] == "C0ENGINEER" and "thread_ts" not in shared.params
    assert "<@U0ANNA> asked" in texts(shared.params) and "On-Call and Incident Response Runbook" in texts(shared.params)
    # Reactions on the shared message are votes on the same answer.
    ts = slack.messages("C0ENGINEER")[-1]["ts"]
    react(lorebot, "+1", user="U0BORIS", ts=ts)
    assert lorebot.feedback.stats().upvotes == 1


def test_an_answer_cannot_be_shared_into_another_channel(lorebot, slack):
    url = slack.response_url("finance")
    lorebot.sender.command(VENDOR, channel_id="C0FINANCE", user_id="U0ANNA", response_url=url)
    [answer] = slack.wait_for("response_url:finance")
    interaction_id = answer.params["blocks"][-1]["elements"][0]["value"]
    lorebot.sender.block_action("share_answer", interaction_id, user_id="U0ANNA", channel_id="C0ENGINEER",
                                message_ts=None, response_url=url)
    lorebot.finish()
    assert slack.calls("chat.postMessage") == []
    assert "only share" in slack.calls("response_url:finance")[-1].params["text"]


def test_slash_help_and_sources_list_only_what_the_channel_may_see(lorebot, slack):
    lorebot.sender.command("help", channel_id="C0FINANCE", user_id="U0ANNA", response_url=slack.response_url("help"))
    [help_] = slack.wait_for("response_url:help")
    assert "/lorebot sources" in texts(help_.params)

    lorebot.sender.command("sources", channel_id="C0FINANCE", user_id="U0ANNA", response_url=slack.response_url("src"))
    [sources] = slack.wait_for("response_url:src")
    listed = texts(sources.params)
    assert "Vendor Payment Approval Limits" in listed and "Paid Time Off and Holidays" in listed
    assert "On-Call and Incident Response Runbook" not in listed  # #engineering only


def test_app_home_shows_totals_but_no_channel_only_titles(lorebot, slack):
    answered(lorebot)
    lorebot.sender.event(sr.app_home_opened("U0ANNA"))
    [publish] = slack.wait_for("views.publish")
    assert publish.params["user_id"] == "U0ANNA"
    home = "\n".join(b["text"]["text"] for b in publish.params["view"]["blocks"] if "text" in b)
    assert "1 answer given" in home
    assert "Paid Time Off and Holidays" in home
    assert "Vendor Payment Approval Limits" not in home and "On-Call and Incident Response Runbook" not in home
