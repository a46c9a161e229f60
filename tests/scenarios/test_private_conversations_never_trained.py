"""Nothing said in a private conversation reaches the model every channel talks to (issue 19, repro 1).

Through the real Bolt app and the fake Slack: questions with confidential words, asked about a
*public* document in a private channel, a DM, the assistant pane, a group DM, a Slack Connect
channel, by ``/lorebot``, or folded into a follow-up from a private thread, are answered, voted 👍,
and then never appear in a dataset; each is counted under its reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fakes import slack_requests as sr
from tests.scenarios.test_slack_bot import mention
from training.dataset import DatasetOptions, build_dataset

CONFIDENTIAL = "Confidential: the Bluebird layoffs hit 30 people"
QUESTION = f"{CONFIDENTIAL}… when is the office closed for the holidays?"
SECRET_WORDS = ("Bluebird", "layoffs")


def thumbs_up(bot, channel: str, *, thread_ts: str, fans: int = 3) -> dict:
    """👍 from several people on the answer in the thread; the stored interaction."""
    bot.settle()
    [reply] = [m for m in bot.slack.messages(channel, thread_ts=thread_ts) if m.get("bot_id") or
               m.get("user") == "U0LOREBOT"][-1:]
    for n in range(fans):
        assert bot.sender.event(sr.reaction(True, "+1", user=f"U0FAN{n}", channel=channel,
                                            item_ts=reply["ts"])).status == 200
    bot.settle()
    records = [r for r in bot.feedback.export() if r["channel_id"] == channel]
    assert records and records[-1]["found"] and sum(v["value"] for v in records[-1]["votes"]) == fans
    return records[-1]


def dataset(bot, out: Path, **options):
    report = build_dataset(bot.feedback, out, DatasetOptions(**options))
    written = "".join(p.read_text(encoding="utf-8") for p in sorted(out.iterdir()))
    return report, written


def test_a_confidential_question_in_a_private_channel_is_answered_but_never_learned(lorebot, slack, tmp_path):
    slack.add_channel("G0BLUEBIRD", name="bluebird", is_private=True)
    asked = mention(lorebot, QUESTION, channel="G0BLUEBIRD")
    private = thumbs_up(lorebot, "G0BLUEBIRD", thread_ts=asked["ts"])
    # The same question without the secret, in a public channel: it is learned, so the rule above is
    # what keeps the private one out, not the answer's quality.
    asked = mention(lorebot, "when is the office closed for the holidays?", channel="C0GENERAL")
    public = thumbs_up(lorebot, "C0GENERAL", thread_ts=asked["ts"])

    assert private["conversation_kind"] == "private" and public["conversation_kind"] == "public"
    report, written = dataset(lorebot, tmp_path / "out")
    assert report.decisions[private["interaction_id"]] == "private_conversation"
    assert report.decisions[public["interaction_id"]] in ("train", "heldout")
    assert report.excluded["private_conversation"] == 1 and report.eligible == 1
    assert "office" in written and not any(word in written for word in SECRET_WORDS)


@pytest.mark.parametrize("where", ["dm", "assistant pane", "group dm", "slack connect"])
def test_questions_from_dms_and_shared_channels_are_never_learned(lorebot, slack, tmp_path, where):
    if where == "dm":
        channel, kind = "D0ASKER", "im"
        event = sr.message(QUESTION, channel=channel, channel_type="im")
    elif where == "assistant pane":
        channel, kind = "D0ASSIST", "im"
        greeting = slack.add_message(channel, user="U0LOREBOT", bot_id="B0LOREBOT", text="Hi! Ask me anything.")
        event = sr.message(QUESTION, channel=channel, channel_type="im", thread_ts=greeting)
    elif where == "group dm":
        channel, kind = "G0TRIO", "mpim"
        slack.add_channel(channel, is_mpim=True)
        event = sr.app_mention(f"<@U0LOREBOT> {QUESTION}", channel=channel)
    else:
        channel, kind = "C0PARTNER", "shared"
        slack.add_channel(channel, name="acme-partners", is_ext_shared=True)
        event = sr.app_mention(f"<@U0LOREBOT> {QUESTION}", channel=channel)
    assert lorebot.sender.event(event).status == 200
    record = thumbs_up(lorebot, channel, thread_ts=event.get("thread_ts") or event["ts"])

    assert record["conversation_kind"] == kind
    report, written = dataset(lorebot, tmp_path / "out")
    assert report.excluded["private_conversation"] == 1 and report.eligible == 0
    assert not any(word in written for word in SECRET_WORDS)


def test_a_slash_command_in_a_private_channel_is_never_learned(lorebot, slack, tmp_path):
    slack.add_channel("G0BLUEBIRD", name="bluebird", is_private=True)
    url = slack.response_url("ask")
    assert lorebot.sender.command(QUESTION, channel_id="G0BLUEBIRD", response_url=url).status == 200
    [answer] = slack.wait_for("response_url:ask")
    interaction_id = answer.params["blocks"][-1]["elements"][0]["value"]
    lorebot.sender.block_action("vote_up", interaction_id, user_id="U0FAN", channel_id="G0BLUEBIRD", message_ts=None,
                                response_url=slack.response_url("vote"))
    lorebot.settle()
    assert lorebot.feedback.get_interaction(interaction_id).conversation_kind == "private"
    assert lorebot.feedback.stats().upvotes == 1

    report, written = dataset(lorebot, tmp_path / "out")
    assert report.decisions[interaction_id] == "private_conversation"
    assert not any(word in written for word in SECRET_WORDS)


def test_a_private_threads_earlier_message_never_enters_through_a_follow_up(lorebot, slack, tmp_path):
    """Another person's confidential message, folded into a follow-up's question, stays out even
    where an admin made the channel trainable: only the asker's own words are learned there."""
    slack.add_channel("G0HANDBOOK", name="handbook-questions", is_private=True)
    parent = slack.add_message("G0HANDBOOK", user="U0OTHER", text=QUESTION)
    follow_up = mention(lorebot, "and on new year's day?", channel="G0HANDBOOK", thread_ts=parent)
    record = thumbs_up(lorebot, "G0HANDBOOK", thread_ts=parent)
    assert CONFIDENTIAL in record["question"] and record["asked"] == "and on new year's day?"  # as searched
    assert follow_up["thread_ts"] == parent

    report, written = dataset(lorebot, tmp_path / "unlisted")
    assert report.decisions[record["interaction_id"]] == "private_conversation"
    assert not any(word in written for word in SECRET_WORDS)

    report, written = dataset(lorebot, tmp_path / "listed", trainable_channels=frozenset({"G0HANDBOOK"}))
    assert report.decisions[record["interaction_id"]] in ("train", "heldout")
    assert "and on new year's day?" in written and not any(word in written for word in SECRET_WORDS)


def test_a_failed_lookup_still_answers_and_the_answer_is_never_learned(lorebot, slack, tmp_path):
    slack.fail("conversations.info", error="missing_scope")
    asked = mention(lorebot, QUESTION, channel="C0GENERAL")
    record = thumbs_up(lorebot, "C0GENERAL", thread_ts=asked["ts"])
    assert record["conversation_kind"] is None and record["answer"]
    report, written = dataset(lorebot, tmp_path / "out")
    assert report.decisions[record["interaction_id"]] == "unknown_conversation"
    assert not any(word in written for word in SECRET_WORDS)


def test_the_manifest_grants_the_scopes_the_lookup_needs():
    manifest = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "slack-manifest.yml").read_text())
    assert {"channels:read", "groups:read", "im:read", "mpim:read"} <= set(manifest["oauth_config"]["scopes"]["bot"])
