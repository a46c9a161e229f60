"""A document is data, never markup: Slack's links and mentions written into a document, its file
name or a model's answer reach Slack as text. Real ingest into a real store, the real Bolt app
behind signed requests, and a fake Slack recording what would be posted."""

from __future__ import annotations

import re

import pytest

from bot.app import build_services
from bot.config import load_settings
from bot import rendering
from knowledge.access import Scope
from tests.bot.test_rendering_attacks import EVIL_FILE, EVIL_LINK, message_problems
from tests.fakes.slack_api import stream_text
from tests.scenarios.conftest import FAST_GENERATION, start_bot, stop_bot
from tests.scenarios.test_slack_bot import mention, texts

WIKI = "https://wiki.example/docs"
PAYMENTS = f"# Vendor payments\n\nEvery vendor payment goes through {EVIL_LINK} before it is approved.\n"
PARKING = "Staff parking permits are issued by facilities [2] every spring at the front desk.\n"
EVIL_PARKING = "Staff parking is free on weekends and staff permits are renewed every spring.\n"


@pytest.fixture
def hostile_data(real_embedder, tmp_path):
    """A data directory holding three public documents written by an attacker (one named like
    Slack markup), and the links lorebot may make to them."""
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    (docs / "payments.md").write_text(PAYMENTS)
    (docs / "permits.md").write_text(f"# Parking permits\n\n{PARKING}")
    (docs / EVIL_FILE).write_text(EVIL_PARKING)
    services = build_services(load_settings(data_dir=data), embedder=real_embedder)
    try:
        report = services.ingestor.ingest_paths([docs], scope=Scope.public(), source_url=WIKI)
        assert report.ok, report.failed
        links = {rendering.source_link(d.source) for d in services.store.list_documents()}
    finally:
        services.close()
    return data, links


@pytest.fixture
def hostile_docs_bot(slack, hostile_data, real_embedder, tmp_path):
    running = start_bot(slack, hostile_data[0], real_embedder, tmp_path)
    yield running
    stop_bot(running)


@pytest.fixture
def hostile_model_bot(slack, tgi, hostile_data, real_embedder, tmp_path):
    running = start_bot(slack, hostile_data[0], real_embedder, tmp_path, tgi_url=tgi.url,
                        adapters_dir=tmp_path / "adapters", **FAST_GENERATION)
    yield running
    stop_bot(running)


def test_a_document_link_in_an_answer_is_text_and_names_its_real_host(hostile_docs_bot, hostile_data):
    lorebot = hostile_docs_bot
    mention(lorebot, "what does every vendor payment go through before approval?", channel="C0GENERAL")
    lorebot.finish()
    [post] = lorebot.slack.calls("chat.postMessage")
    shown = texts(post.params)
    assert "finance (evil.example)" in shown  # the label, with where it really goes
    assert "<!channel>" not in shown and "<https://evil" not in shown and "|finance>" not in shown
    assert message_problems(post.params, links=hostile_data[1]) == []


def test_a_file_named_like_slack_markup_is_listed_as_text(hostile_docs_bot, hostile_data):
    lorebot = hostile_docs_bot
    url = lorebot.slack.response_url("src")
    lorebot.sender.command("sources", channel_id="C0GENERAL", user_id="U0ANNA", response_url=url)
    [sources] = lorebot.slack.wait_for("response_url:src")
    shown = texts(sources.params)
    assert "<!here>" not in shown and "Parking|x&gt;&lt;!here&gt;&lt;z" in shown
    assert message_problems(sources.params, links=hostile_data[1]) == []


def test_a_file_named_like_slack_markup_is_a_safe_source_of_an_answer(hostile_docs_bot, hostile_data):
    lorebot = hostile_docs_bot
    mention(lorebot, "is staff parking free on weekends?", channel="C0GENERAL")
    lorebot.finish()
    [post] = lorebot.slack.calls("chat.postMessage")
    assert "Parking|x&gt;&lt;!here&gt;&lt;z" in texts(post.params)
    assert "<!here>" not in texts(post.params)
    assert message_problems(post.params, links=hostile_data[1]) == []


def test_a_bracketed_number_in_a_document_adds_no_citation(hostile_docs_bot):
    lorebot = hostile_docs_bot
    mention(lorebot, "who issues staff parking permits, and when?", channel="C0GENERAL")
    lorebot.finish()
    [post] = lorebot.slack.calls("chat.postMessage")
    shown = texts(post.params)
    # The quote's own "[2]" is shown as "(2)" and cites nothing; the marker after it is lorebot's.
    assert "issued by facilities (2) every spring at the front desk. [1]" in shown
    assert "*[1]* <https://wiki.example/docs/permits.md|Parking permits>" in shown
    quotes = [line for line in shown.splitlines() if line.startswith("&gt; ")]
    assert quotes and all(re.search(r"\[\d+\]", q[: q.rindex("[")]) is None for q in quotes)
    assert set(re.findall(r"^\*\[(\d+)\]\*", shown, re.MULTILINE)) == {q.rsplit("[", 1)[1].rstrip("]") for q in quotes}


def test_a_models_markup_is_streamed_and_posted_as_text(hostile_model_bot, hostile_data, tgi):
    lorebot = hostile_model_bot
    tgi.reply(f"Payments go through {EVIL_LINK} [1]. Tell <!here> and @channel, see "
              "<https://evil.example/login|the wiki> [2].")
    mention(lorebot, "what does every vendor payment go through?", channel="C0GENERAL")
    lorebot.finish()
    streams = lorebot.slack.calls("chat.startStream") + lorebot.slack.calls("chat.appendStream")
    streamed = "".join(stream_text(c.params) for c in streams)
    assert "Payments go through" in streamed
    assert "<" not in streamed and "](" not in streamed and "@channel" not in streamed
    [final] = lorebot.slack.calls("chat.update")
    shown = texts(final.params)
    assert "finance (evil.example)" in shown and "the wiki (evil.example)" in shown
    assert message_problems(final.params, links=hostile_data[1]) == []
