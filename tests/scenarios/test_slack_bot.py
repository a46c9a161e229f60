"""The Slack bot end to end: signed requests from "Slack" to the real Bolt app over HTTP, and every
Web API call it makes recorded by a fake Slack. What is asserted is what people in Slack would see."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from bot.answering import NOT_FOUND
from bot.apologies import TRY_AGAIN
from bot.replies import HOW_TO, WORKING
from bot.server import EVENTS_PATH
from tests.fakes import slack_requests as sr
from tests.scenarios.conftest import BOT_USER, start_bot, stop_bot

ON_CALL = "how long until a page escalates to the secondary on-call?"
VENDOR = "we're about to pay a brand-new drone survey contractor around $30k. who has to sign off on that payment?"


def texts(message: dict) -> str:
    """Everything a person would read in a posted message: its text and its blocks' text."""
    parts = [message.get("text", "")]
    for block in message.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text.get("text", ""))
        for element in block.get("elements", []):
            label = element.get("text")
            parts.append(label.get("text", "") if isinstance(label, dict) else str(label or ""))
    return "\n".join(parts)


def action_ids(message: dict) -> list[str]:
    return [e["action_id"] for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


def mention(lorebot, text: str, *, channel: str, **kwargs):
    event = sr.app_mention(f"<@{BOT_USER}> {text}", channel=channel, **kwargs)
    response = lorebot.sender.event(event)
    assert response.status == 200
    return event


def test_a_mention_gets_one_threaded_reply_with_sources_and_vote_buttons(lorebot):
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()

    posts = lorebot.slack.calls("chat.postMessage")
    assert len(posts) == 1
    reply = posts[0].params
    assert reply["channel"] == "C0ENGINEER" and reply["thread_ts"] == event["ts"]
    shown = texts(reply)
    assert "*Sources*" in shown and "On-Call and Incident Response Runbook" in shown
    assert action_ids(reply) == ["vote_up", "vote_down"]
    assert lorebot.feedback.stats().interactions == 1


def test_a_mention_inside_a_thread_answers_in_that_thread(lorebot, slack):
    parent = slack.add_message("C0ENGINEER", user="U0OTHER", text="Incident review tomorrow")
    mention(lorebot, ON_CALL, channel="C0ENGINEER", thread_ts=parent)
    lorebot.finish()
    assert [c.params["thread_ts"] for c in slack.calls("chat.postMessage")] == [parent]


def test_a_retried_event_and_a_second_copy_of_the_same_post_are_answered_once(lorebot):
    event = sr.app_mention(f"<@{BOT_USER}> {ON_CALL}", channel="C0ENGINEER")
    first = lorebot.sender.event(event, event_id="Ev0FIRST")
    retried = lorebot.sender.event(event, event_id="Ev0FIRST", retry_num=1)
    # Slack also delivers a DM-style `message` copy of the same post under another event ID.
    copy = lorebot.sender.event({**event, "type": "message", "channel_type": "im"}, event_id="Ev0COPY")
    lorebot.finish()
    assert [first.status, retried.status, copy.status] == [200, 200, 200]
    assert len(lorebot.slack.calls("chat.postMessage")) == 1


def test_the_same_event_is_answered_once_across_a_restart(slack, handbook_data_dir, real_embedder, tmp_path,
                                                          database_url):
    event = sr.app_mention(f"<@{BOT_USER}> {ON_CALL}", channel="C0ENGINEER")
    first = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, database_url=database_url)
    first.sender.event(event, event_id="Ev0RESTART")
    first.finish()
    stop_bot(first)
    second = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, database_url=database_url)  # same database
    try:
        second.sender.event(event, event_id="Ev0RESTART", retry_num=2, retry_reason="http_error")
        second.finish()
    finally:
        stop_bot(second)
    assert len(slack.calls("chat.postMessage")) == 1


@pytest.mark.parametrize("forgery", ["bad signature", "stale timestamp", "no signature"])
def test_forged_and_stale_requests_are_refused_and_nothing_runs(lorebot, forgery):
    body = json.dumps(sr.event_envelope(sr.app_mention(f"<@{BOT_USER}> {ON_CALL}", channel="C0ENGINEER"))).encode()
    if forgery == "bad signature":
        response = lorebot.sender.post(body, content_type="application/json", signature="v0=" + "0" * 64)
    elif forgery == "stale timestamp":
        response = lorebot.sender.post(body, content_type="application/json", timestamp=int(time.time()) - 6 * 60)
    else:
        response = lorebot.sender.post(body, content_type="application/json", headers={}, unsigned=True)
    lorebot.finish()
    assert response.status == 401
    assert lorebot.slack.calls("chat.postMessage") == []
    assert lorebot.feedback.stats().interactions == 0


def test_the_bots_own_messages_edits_and_deletions_are_never_answered(lorebot):
    sender = lorebot.sender
    sender.event(sr.message(f"{ON_CALL}", channel="D0DIRECT", channel_type="im", user=BOT_USER, bot_id="B0LOREBOT"))
    sender.event(sr.message_changed(ON_CALL, channel="D0DIRECT", channel_type="im"))
    sender.event(sr.message_deleted(channel="D0DIRECT", channel_type="im"))
    sender.event(sr.message(ON_CALL, channel="D0DIRECT", channel_type="im", user="U0OTHERBOT", bot_id="B0OTHER",
                            subtype="bot_message"))
    lorebot.finish()
    assert lorebot.slack.calls("chat.postMessage") == []


def test_a_mention_without_a_question_gets_a_short_how_to(lorebot):
    response = lorebot.sender.event(sr.app_mention(f"<@{BOT_USER}>", channel="C0ENGINEER"))
    lorebot.finish()
    assert response.status == 200
    [post] = lorebot.slack.calls("chat.postMessage")
    assert post.params["text"] == HOW_TO
    assert lorebot.feedback.stats().interactions == 0


def test_a_follow_up_in_the_thread_is_answered_as_the_question_it_continues(lorebot, slack):
    parent = slack.add_message("C0GENERAL", user="U0ASKER", text=f"<@{BOT_USER}> how many vacation days do I get?")
    slack.add_message("C0GENERAL", user=BOT_USER, bot_id="B0LOREBOT", text="Quoted from the documents: …",
                      thread_ts=parent)
    mention(lorebot, "and do unused ones roll over?", channel="C0GENERAL", thread_ts=parent)
    lorebot.finish()

    assert slack.calls("conversations.replies")[0].params["ts"] == parent
    [record] = list(lorebot.feedback.export())
    assert record["question"] == "how many vacation days do I get? and do unused ones roll over?"
    assert record["asked"] == "and do unused ones roll over?"
    [post] = slack.calls("chat.postMessage")
    assert "Paid Time Off and Holidays" in texts(post.params)


def test_follow_ups_without_a_mention_only_when_enabled_and_only_where_it_answered(
    slack, handbook_data_dir, real_embedder, tmp_path
):
    running = start_bot(slack, handbook_data_dir, real_embedder, tmp_path, follow_up_in_threads=True)
    try:
        answered = mention(running, "how many vacation days do I get?", channel="C0GENERAL")["ts"]
        slack.wait_for("chat.postMessage")
        running.sender.event(sr.message("and do they roll over?", channel="C0GENERAL", thread_ts=answered))
        other = slack.add_message("C0GENERAL", user="U0OTHER", text="lunch?")
        running.sender.event(sr.message("pizza or tacos?", channel="C0GENERAL", thread_ts=other))
        running.finish()
    finally:
        stop_bot(running)
    posts = slack.calls("chat.postMessage")
    assert [p.params["thread_ts"] for p in posts] == [answered, answered]


def test_the_assistant_pane_shows_a_status_then_answers_in_its_thread(lorebot):
    event = sr.message(ON_CALL, channel="D0ASSIST", channel_type="im", thread_ts="1700000000.000001")
    lorebot.sender.event(event)
    lorebot.finish()
    [status] = lorebot.slack.calls("assistant.threads.setStatus")
    assert status.params["channel_id"] == "D0ASSIST" and status.params["status"]
    [post] = lorebot.slack.calls("chat.postMessage")
    assert post.params["thread_ts"] == "1700000000.000001"
    # A DM sees public documents only: the on-call runbook belongs to #engineering.
    assert "On-Call and Incident Response Runbook" not in texts(post.params)


def test_a_slow_answer_shows_a_placeholder_that_becomes_the_answer(lorebot):
    lorebot.bot.deps.replies.progress_delay_s = 0  # every answer counts as slow
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()
    [placeholder] = lorebot.slack.calls("chat.postMessage")
    assert placeholder.params["text"] == WORKING and placeholder.params["thread_ts"] == event["ts"]
    [update] = lorebot.slack.calls("chat.update")
    assert "*Sources*" in texts(update.params)
    [message] = lorebot.slack.messages("C0ENGINEER", thread_ts=event["ts"])  # the placeholder, now the answer
    assert "*Sources*" in texts(message)


def test_a_rate_limited_reply_is_retried_and_delivered(lorebot):
    lorebot.slack.fail("chat.postMessage", status=429, retry_after=1)
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()
    calls = lorebot.slack.calls("chat.postMessage")
    assert len(calls) == 2 and calls[0].failed and not calls[1].failed
    assert len(lorebot.slack.messages("C0ENGINEER", thread_ts=event["ts"])) == 1  # one answer, posted once


def test_slack_refusing_the_answer_still_gets_an_apology_attempt(lorebot):
    lorebot.slack.fail("chat.postMessage", error="invalid_blocks")
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()
    [_, apology] = lorebot.slack.calls("chat.postMessage")
    assert apology.params["thread_ts"] == event["ts"] and TRY_AGAIN in apology.params["text"]
    assert "invalid_blocks" not in apology.params["text"]


def test_a_private_channels_document_never_reaches_another_channel(lorebot):
    mention(lorebot, VENDOR, channel="C0ENGINEER")
    mention(lorebot, VENDOR, channel="C0FINANCE")
    lorebot.finish()
    by_channel = {c.params["channel"]: texts(c.params) for c in lorebot.slack.calls("chat.postMessage")}
    assert "Vendor Payment Approval Limits" in by_channel["C0FINANCE"]
    assert "drone survey contractor" in by_channel["C0FINANCE"]
    assert by_channel["C0ENGINEER"].startswith(NOT_FOUND)
    assert "Vendor Payment Approval Limits" not in by_channel["C0ENGINEER"]
    assert "drone survey contractor" not in by_channel["C0ENGINEER"]
    stored = {r["channel_id"]: r for r in lorebot.feedback.export()}
    assert all(p["scope"] == ["public"] for p in stored["C0ENGINEER"]["passages"])


def test_healthz_and_url_verification(lorebot):
    assert lorebot.sender.get("/healthz").status == 200
    response = lorebot.sender.url_verification("challenge-3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert response.status == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.body.decode()


def test_an_oversized_request_is_refused_before_it_is_read(lorebot):
    host, port = lorebot.server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest("POST", EVENTS_PATH)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2_000_000))  # announced, never sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    lorebot.finish()
    assert lorebot.slack.calls("chat.postMessage") == []
