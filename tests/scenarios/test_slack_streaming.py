"""An answer a model writes piece by piece is streamed into the thread, then replaced by the
finished, checked answer with its sources."""

from __future__ import annotations

from tests.fakes.slack_api import stream_text
from tests.scenarios.test_slack_bot import ON_CALL, mention, texts

ANSWER = ("The secondary on-call is paged automatically when the primary does not acknowledge a page "
          "within ten minutes [1]. After that, the incident commander is paged as well [1][2]. "
          "See the runbook for the escalation table [1].")


def test_a_streamed_answer_appears_as_it_is_written_then_becomes_the_checked_answer(model_bot, tgi):
    lorebot = model_bot
    tgi.reply(ANSWER)
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER", user="U0ANNA")
    lorebot.finish()

    [start] = lorebot.slack.calls("chat.startStream")
    assert start.params["thread_ts"] == event["ts"] and start.params["recipient_user_id"] == "U0ANNA"
    assert lorebot.slack.calls("chat.stopStream")
    # The first words went out on their own, at once; the rest a few words at a time.
    first = stream_text(start.params)
    streamed = first + "".join(stream_text(c.params) for c in lorebot.slack.calls("chat.appendStream"))
    assert first == "The "
    assert ANSWER.startswith(streamed) and len(streamed) > len(ANSWER) // 2
    # The streamed message is then replaced by the rendered answer, sources and buttons included.
    [final] = lorebot.slack.calls("chat.update")
    assert final.params["ts"] == lorebot.slack.calls("chat.stopStream")[0].params["ts"]
    shown = texts(final.params)
    assert "*Sources*" in shown and "*[1]*" in shown and "escalation table [1]" in shown
    assert lorebot.slack.calls("chat.postMessage") == []  # one message, built in place
    [record] = list(lorebot.feedback.export())
    assert record["generator"] == "tgi" and record["adapter"] is None  # no adapter chosen: the base model
    assert record["answer"].startswith("The secondary on-call is paged")


def test_where_slack_refuses_streaming_a_placeholder_is_updated_at_most_once_a_second(model_bot, tgi):
    lorebot = model_bot
    tgi.reply(ANSWER)
    lorebot.slack.fail("chat.startStream", error="not_allowed_token_type")
    event = mention(lorebot, ON_CALL, channel="C0ENGINEER")
    lorebot.finish()

    [placeholder] = lorebot.slack.calls("chat.postMessage")
    assert placeholder.params["thread_ts"] == event["ts"]
    [message] = lorebot.slack.messages("C0ENGINEER", thread_ts=event["ts"])  # the placeholder, in place
    assert "*Sources*" in texts(message)
    updates = lorebot.slack.calls("chat.update")
    assert {u.params["ts"] for u in updates} == {message["ts"]}
    # The pieces arrive within milliseconds: one progress update at most, then the answer.
    intermediate, final = updates[:-1], updates[-1]
    assert len(intermediate) <= 1
    assert "*Sources*" in texts(final.params)
