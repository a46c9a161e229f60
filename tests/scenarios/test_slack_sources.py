"""Slack history shown as sources, through the real Bolt app and a fake Slack: an answer cites the
thread by channel, day and permalink; ``/lorebot sources`` lists a channel's threads with their
authors by name and nothing of another channel's; the App Home shows only public threads."""

from __future__ import annotations

import pytest

from bot.slack_history.documents import DocumentOptions
from bot.slack_history.ingest import SlackIngest, SyncOptions
from bot.slack_history.reader import who_am_i
from bot.slack_history.sync_state import SyncState
from tests.fakes import slack_requests as sr
from tests.scenarios.conftest import start_bot, stop_bot
from tests.scenarios.test_slack_bot import mention, texts


@pytest.fixture
def lorebot(slack, real_embedder, tmp_path):
    running = start_bot(slack, tmp_path / "data", real_embedder, tmp_path)
    yield running
    stop_bot(running)


def ingest(lorebot, channels: list[str], *, public: bool = False) -> None:
    services = lorebot.services
    client = lorebot.bot.app.client
    sync = SlackIngest(client=client, me=who_am_i(client, services.settings.slack_api_url), ingestor=services.ingestor,
                       sync_state=SyncState(services.database),
                       options=SyncOptions(documents=DocumentOptions(chunking=services.chunking)))
    report = sync.run(channels, since=None, public=public, allow_widen=False)
    assert report.ok, report.failed


@pytest.fixture
def history(slack, lorebot):
    slack.add_channel("C0ENG", name="eng")
    slack.add_channel("C0SALES", name="sales")
    slack.add_channel("C0GENERAL", name="general")
    freeze = slack.add_message("C0ENG", user="U0ANA", text="When does the deploy freeze start before holidays?")
    slack.add_message("C0ENG", user="U0BEN", thread_ts=freeze,
                      text="The deploy freeze starts 48 hours before every public holiday.")
    deal = slack.add_message("C0SALES", user="U0CAT", text="Project Nightingale: the Acme renewal closes Friday.")
    slack.add_message("C0SALES", user="U0DAN", thread_ts=deal, text="Acme gets 15 percent off the renewal.")
    slack.add_message("C0GENERAL", user="U0EVE", text="The office kitchen closes at 6 pm on Fridays.")
    ingest(lorebot, ["C0ENG", "C0SALES"])
    ingest(lorebot, ["C0GENERAL"], public=True)
    slack.reset_calls()
    return {"freeze": freeze}


def test_an_answer_in_eng_cites_the_eng_thread_by_channel_day_and_permalink(lorebot, slack, history) -> None:
    mention(lorebot, "how long before a public holiday does the deploy freeze start?", channel="C0ENG")
    lorebot.finish()
    [post] = slack.calls("chat.postMessage")
    shown = texts(post.params)
    permalink = f"https://lorebot-test.slack.com/archives/C0ENG/p{history['freeze'].replace('.', '')}"
    assert f"<{permalink}|#eng · " in shown
    assert "u0ben" in shown  # the author by name (the fake's users.info names U0BEN "u0ben"), never a mention
    assert "<@" not in shown and "Nightingale" not in shown and "#sales" not in shown


def test_slash_sources_lists_the_channels_threads_by_author_name_and_no_other_channels(lorebot, slack, history) -> None:
    lorebot.sender.command("sources", channel_id="C0ENG", user_id="U0ANA", response_url=slack.response_url("eng"))
    [eng] = slack.wait_for("response_url:eng")
    listed = texts(eng.params)
    assert "|#eng · " in listed and "· u0ana, u0ben: When does the deploy freeze start" in listed
    assert "|#general · " in listed and "u0eve" in listed  # public history is everyone's
    assert "Nightingale" not in listed and "#sales" not in listed and "u0cat" not in listed and "<@" not in listed

    lorebot.sender.command("sources", channel_id="C0SALES", user_id="U0CAT", response_url=slack.response_url("sales"))
    [sales] = slack.wait_for("response_url:sales")
    assert "Nightingale" in texts(sales.params) and "deploy freeze" not in texts(sales.params)
    # Only the authors of what is listed are looked up: #sales's people were never asked about from #eng.
    assert {c.params["user"] for c in slack.calls("users.info")} == {"U0ANA", "U0BEN", "U0EVE", "U0CAT", "U0DAN"}


def test_app_home_shows_public_slack_history_and_no_channel_only_thread(lorebot, slack, history) -> None:
    lorebot.sender.event(sr.app_home_opened("U0ANA"))
    lorebot.settle()
    [publish] = slack.wait_for("views.publish")
    home = "\n".join(b["text"]["text"] for b in publish.params["view"]["blocks"] if "text" in b)
    assert "For everyone: <https://lorebot-test.slack.com/archives/C0GENERAL/p" in home and "|#general · " in home
    assert "u0eve" in home  # the public thread's author, by name
    assert "deploy freeze" not in home and "Nightingale" not in home and "#eng" not in home and "#sales" not in home


def test_a_rate_limited_name_lookup_never_holds_the_answer_back(lorebot, slack, history) -> None:
    """users.info answering 429 is not waited out on the way to an answer: the author shows as the
    bare ID (plain text) and the answer goes out with one refused lookup, not a retry per Retry-After."""
    slack.fail("users.info", error="ratelimited", status=429, times=20, retry_after=3)
    mention(lorebot, "how long before a public holiday does the deploy freeze start?", channel="C0ENG")
    lorebot.finish()
    [post] = slack.calls("chat.postMessage")
    shown = texts(post.params)
    assert "#eng · " in shown and "U0BEN" in shown and "<@" not in shown
    # Each author looked up once, refused once: nothing retried while the answer waited.
    assert len([c for c in slack.calls("users.info") if c.params.get("user") == "U0BEN"]) == 1
