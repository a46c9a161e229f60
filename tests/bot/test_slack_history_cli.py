"""`lorebot ingest-slack` in-process against the fake Slack Web API, through a real WebClient.

The embedding model is the hashing stand-in (tests/conftest.py): these tests are about what is
read from Slack and what lands in the index, not about ranking.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
from typer.testing import CliRunner

import bot.cli
from bot.app import build_services
from bot.cli import app
from bot.config import load_settings
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"


@pytest.fixture
def slack():
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        fake.add_channel("C0ENG", name="eng")
        yield fake


@pytest.fixture
def lorebot(slack, tmp_path, monkeypatch, hashing_embedder):
    """Runs the CLI with the bot token and SLACK_API_URL pointing at the fake (small pages)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    monkeypatch.setenv("LOREBOT_SLACK_PAGE_SIZE", "2")
    monkeypatch.setattr(bot.cli, "build_services", partial(build_services, embedder=hashing_embedder))

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))

    return invoke


def ingest(lorebot, *args: str) -> dict:
    result = lorebot("ingest-slack", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def documents(lorebot, channel: str | None = None) -> list[dict]:
    args = ["documents", "--json"] + (["--channel", channel] if channel else [])
    return json.loads(lorebot(*args).stdout)["documents"]


def texts(lorebot, query: str, channel: str) -> list[str]:
    result = lorebot("search", query, "--channel", channel, "-k", "50", "--json")
    return [r["text"] for r in json.loads(result.stdout)["results"]]


def indexed(embedder) -> str:
    """Every chunk's text in the index (the settings come from the test's environment)."""
    services = build_services(load_settings(), embedder=embedder)
    try:
        store = services.store
        return "\n".join(c.text for d in store.list_documents() for c in store.chunks_of(d.doc_id))
    finally:
        services.close()


def seed_threads(slack: FakeSlackAPI, channel: str = "C0ENG", *, threads: int = 3, replies: int = 3) -> list[str]:
    parents = []
    for t in range(threads):
        parent = slack.add_message(channel, text=f"Question {t}: how do we rotate certificate {t}?", user="U0ANA")
        for r in range(replies):
            slack.add_message(channel, text=f"Answer {t}.{r}: run rotate-certs step {r}", user="U0BEN", thread_ts=parent)
        parents.append(parent)
    return parents


def test_threads_and_other_messages_become_documents_cited_by_permalink(slack, lorebot, hashing_embedder) -> None:
    parents = seed_threads(slack)
    slack.add_message("C0ENG", text="lorebot answered this", user="U0LOREBOT", bot_id="B0LOREBOT", thread_ts=parents[0])
    slack.add_message("C0ENG", text="build 812 passed", user=None, bot_id="B0CI", subtype="bot_message")
    slack.add_message("C0ENG", text="has joined the channel", user="U0NEW", subtype="channel_join")
    slack.add_message("C0ENG", text="Standup moves to 10:30 from Monday", user="U0CAT")

    report = ingest(lorebot, "--channel", "C0ENG")

    assert report["channels"] == ["C0ENG"] and report["failed"] == []
    assert (report["threads"], report["added"]) == (3, 4)  # 3 threads + 1 group of standalone messages
    docs = documents(lorebot)
    assert {d["scope"][0] for d in docs} == {"C0ENG"} and all(d["title"].startswith("#eng · ") for d in docs)
    assert {d["source"] for d in docs} >= {f"https://lorebot-test.slack.com/archives/C0ENG/p{p.replace('.', '')}"
                                           for p in parents}
    text = indexed(hashing_embedder)
    assert "Answer 2.2: run rotate-certs step 2" in text and "Standup moves" in text
    assert not any(words in text for words in ("lorebot answered", "build 812", "joined the channel"))
    # Several pages of both history and every thread (LOREBOT_SLACK_PAGE_SIZE=2), all followed.
    assert sum(1 for c in slack.calls("conversations.history") if c.params.get("cursor")) >= 2
    assert sum(1 for c in slack.calls("conversations.replies") if c.params.get("cursor")) >= 3
    assert texts(lorebot, "rotate certificate", "C0SALES") == []


def test_tier_3_rate_limits_are_waited_out_and_nothing_is_lost(slack, lorebot, hashing_embedder) -> None:
    seed_threads(slack, threads=3, replies=2)
    for method in ("conversations.history", "conversations.replies", "conversations.info"):
        slack.rate_limit(method, 2, per_s=1.0)

    report = ingest(lorebot, "--channel", "C0ENG")

    assert (report["threads"], report["added"], report["failed"]) == (3, 3, [])
    assert any(c.failed for c in slack.calls("conversations.replies"))  # 429s happened …
    text = indexed(hashing_embedder)
    assert all(f"Answer {t}.{r}" in text for t in range(3) for r in range(2))  # … and nothing was lost


def test_a_channel_lorebot_cannot_read_is_named_with_the_reason_and_the_rest_is_ingested(slack, lorebot) -> None:
    seed_threads(slack, threads=1)
    slack.add_channel("C0OUT", is_member=False)
    slack.add_channel("C0OLD", is_archived=True)
    slack.add_channel("D0ANA", is_im=True)
    slack.delete_channel("C0GONE")

    result = lorebot("ingest-slack", "-c", "C0OUT", "-c", "C0ENG", "-c", "C0GONE", "-c", "D0ANA", "-c", "C0OLD")

    assert result.exit_code == 1, result.output
    errors = " ".join(result.stderr.split())
    assert "C0OUT: not_in_channel" in errors and "/invite @lorebot" in errors
    assert "C0GONE: channel_not_found" in errors and "D0ANA: is a DM" in errors and "C0OLD: archived" in errors
    assert result.stdout.startswith("1 channels read, 4 not read; 1 threads")
    assert len(documents(lorebot, "C0ENG")) == 1
    as_json = json.loads(lorebot("ingest-slack", "-c", "C0OUT", "--json").stdout)
    assert as_json["failed"][0]["channel"] == "C0OUT" and as_json["failed"][0]["reason"].startswith("not_in_channel")


def test_public_is_refused_for_a_private_or_shared_channel(slack, lorebot) -> None:
    slack.add_channel("G0PRIV", name="deals", is_private=True)
    slack.add_channel("C0EXT", name="partners", is_ext_shared=True)
    slack.add_channel("C0ALL", name="general")
    for channel in ("G0PRIV", "C0EXT", "C0ALL"):
        seed_threads(slack, channel, threads=1, replies=1)

    result = lorebot("ingest-slack", "-c", "G0PRIV", "-c", "C0EXT", "-c", "C0ALL", "--public", "--json")

    assert result.exit_code == 1
    failed = {f["channel"]: f["reason"] for f in json.loads(result.stdout)["failed"]}
    assert failed["G0PRIV"].startswith("--public refused: it is a private channel")
    assert failed["C0EXT"].startswith("--public refused: it is shared with another organization")
    assert [d["scope"] for d in documents(lorebot)] == [["public"]]
    assert ingest(lorebot, "-c", "G0PRIV")["added"] == 1  # scoped to its channel, it is fine
    assert [d["scope"] for d in documents(lorebot, "C0ALL")] == [["public"]]


def test_a_rerun_reads_only_what_changed_and_a_new_reply_updates_its_thread(slack, lorebot, hashing_embedder) -> None:
    parents = seed_threads(slack)
    ingest(lorebot, "-c", "C0ENG")
    slack.reset_calls()

    again = ingest(lorebot, "-c", "C0ENG")
    assert (again["added"], again["updated"], again["unchanged"], again["threads"]) == (0, 0, 0, 0)
    assert slack.calls("conversations.replies") == []

    slack.add_message("C0ENG", text="Update: rotate-certs now needs the --staging flag", user="U0CAT",
                      thread_ts=parents[0])
    later = ingest(lorebot, "-c", "C0ENG")
    assert (later["threads"], later["updated"], later["added"]) == (1, 1, 0)
    assert {c.params["ts"] for c in slack.calls("conversations.replies")} == {parents[0]}
    assert "--staging flag" in indexed(hashing_embedder)


def test_an_edit_replaces_the_old_text(slack, lorebot, hashing_embedder) -> None:
    parents = seed_threads(slack, threads=1, replies=1)
    lone = slack.add_message("C0ENG", text="The wifi password is on the fridge", user="U0CAT")
    ingest(lorebot, "-c", "C0ENG")
    reply = slack.messages("C0ENG", thread_ts=parents[0])[1]["ts"]

    slack.edit_message("C0ENG", reply, "Answer 0.0: run rotate-certs twice, then verify")
    slack.edit_message("C0ENG", lone, "The wifi password is at the front desk")
    incremental = ingest(lorebot, "-c", "C0ENG")  # messages outside threads are re-read in the look-back
    assert incremental["updated"] == 1
    resync = ingest(lorebot, "-c", "C0ENG", "--since", "2020-01-01")  # a thread's edit: a re-sync
    assert (resync["threads"], resync["updated"]) == (1, 1)

    text = indexed(hashing_embedder)
    assert "run rotate-certs twice" in text and "front desk" in text
    assert "step 0" not in text and "fridge" not in text
    assert len(documents(lorebot)) == 2


def test_widening_to_public_needs_allow_widen_and_narrowing_moves_every_document(slack, lorebot) -> None:
    seed_threads(slack, threads=2)
    ingest(lorebot, "-c", "C0ENG")

    refused = lorebot("ingest-slack", "-c", "C0ENG", "--public", "--json")
    assert refused.exit_code == 2
    assert json.loads(refused.stdout)["error"] == "widening_refused"
    assert {d["scope"][0] for d in documents(lorebot)} == {"C0ENG"}

    assert ingest(lorebot, "-c", "C0ENG", "--public", "--allow-widen")["rescoped"] == 2
    assert {d["scope"][0] for d in documents(lorebot)} == {"public"}
    assert ingest(lorebot, "-c", "C0ENG")["rescoped"] == 2  # back to the channel: every document narrows
    assert {d["scope"][0] for d in documents(lorebot)} == {"C0ENG"}


def test_bad_options_are_clear_errors(lorebot, monkeypatch) -> None:
    assert "YYYY-MM-DD" in lorebot("ingest-slack", "-c", "C0ENG", "--since", "last week").stderr
    assert "not a Slack channel ID" in lorebot("ingest-slack", "-c", "eng").stderr
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    result = lorebot("ingest-slack", "-c", "C0ENG")
    assert result.exit_code == 2 and "SLACK_BOT_TOKEN is not set" in result.stderr


def test_a_conversation_that_continues_after_a_sync_stays_one_document(slack, lorebot, monkeypatch) -> None:
    monkeypatch.setenv("LOREBOT_SLACK_LOOKBACK_DAYS", "0")  # the next sync starts at the cursor itself
    for n in range(3):
        slack.add_message("C0ENG", text=f"Offsite plan item {n}", user="U0ANA")
    assert ingest(lorebot, "-c", "C0ENG")["added"] == 1

    slack.add_message("C0ENG", text="Offsite plan item 3, a minute later", user="U0BEN")
    later = ingest(lorebot, "-c", "C0ENG")

    # The new message joins the conversation it continues (read back past the cursor to its start),
    # rather than starting a second, overlapping document.
    assert (later["added"], later["updated"]) == (0, 1)
    assert len(documents(lorebot)) == 1
