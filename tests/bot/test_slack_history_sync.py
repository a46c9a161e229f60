"""Keeping listed channels current: message events applied one by one, and the scheduled catch-up
after downtime, against the fake Slack Web API through a real WebClient (cursor table on SQLite and
PostgreSQL; the PostgreSQL runs are skipped, with the reason, when no server is reachable).

The embedding model is the hashing stand-in: these tests are about what lands in the index.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

import bot.jobs
from bot.app import build_services, build_slack_bot, slack_client
from bot.config import load_settings
from bot.credentials import SlackCredentials
from bot.jobs import job_specs, sync_slack_history
from bot.slack_history.reader import who_am_i
from bot.slack_history.sync import build_slack_sync
from bot.slack_history.sync_state import SyncState
from tests.fakes import slack_requests as sr
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
MINUTE = 60.0


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack():
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        fake.add_channel("C0ENG", name="eng")
        yield fake


@pytest.fixture
def env(slack, tmp_path, monkeypatch, database_url, hashing_embedder):
    """Settings in the environment, as the scheduler's job reads them; services share the embedder."""
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOREBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    monkeypatch.setenv("LOREBOT_ANSWER_UNIT_VECTORS", "false")
    monkeypatch.setattr(bot.jobs, "build_services", partial(build_services, embedder=hashing_embedder))
    return monkeypatch


@pytest.fixture
def lorebot(env, hashing_embedder):
    """The sync as the bot builds it, on services of the environment's settings."""
    services = build_services(load_settings(), embedder=hashing_embedder)
    settings = services.settings
    client = slack_client(settings, TOKEN)
    sync = build_slack_sync(services, client, who_am_i(client, settings.slack_api_url))
    yield sync
    services.close()


def indexed(sync) -> str:
    """Every chunk's text, read by a fresh store (the job writes from services of its own)."""
    services = build_services(load_settings(), embedder=sync.history.ingestor.embedder)
    try:
        store = services.store
        return "\n".join(c.text for d in store.list_documents() for c in store.chunks_of(d.doc_id))
    finally:
        services.close()


def documents(sync) -> list:
    services = build_services(load_settings(), embedder=sync.history.ingestor.embedder)
    try:
        return services.store.list_documents()
    finally:
        services.close()


def doc_count(sync) -> int:
    return len(documents(sync))


def at(base: float, minutes: float) -> str:
    return f"{base + minutes * MINUTE:.6f}"


BASE = 1_760_000_000.0
OLD = 1_690_000_000.0  # before the fake Slack's own clock (1_700_000_000) less the look-back


def test_a_message_event_rewrites_only_its_thread_or_group(slack, lorebot) -> None:
    parent = slack.add_message("C0ENG", user="U0ANA", text="How do we rotate certificates?", ts=at(BASE, 0))
    slack.add_message("C0ENG", user="U0BEN", text="Run rotate-certs on Fridays", thread_ts=parent, ts=at(BASE, 1))
    slack.add_message("C0ENG", user="U0CAT", text="Standup moves to 10:30", ts=at(BASE, 100))
    lorebot.history.run(["C0ENG"])
    assert doc_count(lorebot) == 2

    reply = slack.add_message("C0ENG", user="U0DAN", text="And verify with check-certs", thread_ts=parent,
                              ts=at(BASE, 101))
    assert lorebot.on_message(sr.message("And verify with check-certs", channel="C0ENG", user="U0DAN", ts=reply,
                                         thread_ts=parent)) == "thread with 2 replies written"
    slack.edit_message("C0ENG", at(BASE, 100), "Standup moves to 11:00")
    lorebot.on_message(sr.message_changed("Standup moves to 11:00", channel="C0ENG", ts=at(BASE, 100),
                                          user="U0CAT", previous_text="Standup moves to 10:30"))
    text = indexed(lorebot)
    assert "verify with check-certs" in text and "11:00" in text and "10:30" not in text
    assert doc_count(lorebot) == 2


def test_a_deleted_message_that_joined_two_conversations_splits_them_and_a_new_one_joins_them(
        slack, lorebot) -> None:
    first = slack.add_message("C0ENG", user="U0ANA", text="Offsite: we book the venue", ts=at(BASE, 0))
    middle = slack.add_message("C0ENG", user="U0BEN", text="Offsite: catering is sorted", ts=at(BASE, 20))
    slack.add_message("C0ENG", user="U0CAT", text="Offsite: buses leave at nine", ts=at(BASE, 40))
    lorebot.history.run(["C0ENG"])
    assert doc_count(lorebot) == 1  # 20-minute gaps: one conversation (window 30)

    slack.delete_message("C0ENG", middle)
    lorebot.on_message(sr.message_deleted(channel="C0ENG", ts=middle, user="U0BEN", previous_text="catering"))
    assert doc_count(lorebot) == 2 and "catering" not in indexed(lorebot)

    bridge = slack.add_message("C0ENG", user="U0DAN", text="Offsite: bring a jacket", ts=at(BASE, 25))
    lorebot.on_message(sr.message("Offsite: bring a jacket", channel="C0ENG", user="U0DAN", ts=bridge))
    assert doc_count(lorebot) == 1 and "jacket" in indexed(lorebot)

    slack.delete_message("C0ENG", first)  # the message the document is keyed by
    lorebot.on_message(sr.message_deleted(channel="C0ENG", ts=first, user="U0ANA"))
    text = indexed(lorebot)
    assert doc_count(lorebot) == 1 and "venue" not in text and "jacket" in text


def test_a_deleted_parent_keeps_its_replies_and_a_thread_with_nothing_left_is_removed(slack, lorebot) -> None:
    parent = slack.add_message("C0ENG", user="U0ANA", text="Where is the VPN config?", ts=at(BASE, 0))
    reply = slack.add_message("C0ENG", user="U0BEN", text="In the ops vault", thread_ts=parent, ts=at(BASE, 1))
    lorebot.history.run(["C0ENG"])

    slack.delete_message("C0ENG", parent)  # a tombstone stays: the thread survives
    lorebot.on_message(sr.message_deleted(channel="C0ENG", ts=parent, thread_ts=parent, user="U0ANA"))
    assert "VPN config" not in indexed(lorebot) and "ops vault" in indexed(lorebot)

    slack.delete_message("C0ENG", reply)
    lorebot.on_message(sr.message_deleted(channel="C0ENG", ts=reply, thread_ts=parent, user="U0BEN"))
    assert doc_count(lorebot) == 0


def test_events_of_unlisted_channels_bots_and_questions_to_lorebot_change_nothing(slack, lorebot) -> None:
    slack.add_message("C0ENG", user="U0ANA", text="Deploys freeze on Fridays", ts=at(BASE, 0))
    lorebot.history.run(["C0ENG"])
    slack.reset_calls()

    other = slack.add_message("C0OTHER", user="U0ANA", text="Unlisted secret plan")
    assert lorebot.on_message(sr.message("Unlisted secret plan", channel="C0OTHER", user="U0ANA", ts=other)) \
        == "channel not listed"
    assert lorebot.on_message(sr.message("build ok", channel="C0ENG", user=None, bot_id="B0CI",
                                         subtype="bot_message")) == "nothing to index"
    assert lorebot.on_message(sr.message("<@U0LOREBOT> when do deploys freeze?", channel="C0ENG")) \
        == "nothing to index"
    assert lorebot.on_message(sr.message_changed("Quoted: …", channel="C0ENG", user="U0LOREBOT")) \
        == "nothing to index"
    assert [c.method for c in slack.calls()] == []
    assert "Unlisted" not in indexed(lorebot)


def test_the_catch_up_after_downtime_finds_new_edited_and_deleted_messages(slack, lorebot) -> None:
    parent = slack.add_message("C0ENG", user="U0ANA", text="Which port does the cache use?")
    old_reply = slack.add_message("C0ENG", user="U0BEN", text="Port 6379 by default", thread_ts=parent)
    gone_reply = slack.add_message("C0ENG", user="U0CAT", text="Ask Dana for the password", thread_ts=parent)
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")  # new messages' ts are later
    lonely = slack.add_message("C0ENG", user="U0DAN", text="The printer is broken", ts=at(OLD, 0))
    lorebot.history.run(["C0ENG"])
    assert "Ask Dana" in indexed(lorebot)

    # The bot is down: no events arrive for any of these.
    slack.edit_message("C0ENG", old_reply, "Port 6380 since the migration")
    slack.delete_message("C0ENG", gone_reply)
    slack.delete_message("C0ENG", lonely)
    slack.add_message("C0ENG", user="U0ANA", text="The new office opens in May")
    slack.add_message("C0ENG", user="U0ANA", text="Old news, posted late", ts=at(OLD, 100))
    lorebot.events_missed()  # the bot comes back, and records that events may have been missed

    outcome = sync_slack_history()

    assert outcome.outcome == "ok" and "whole history read: C0ENG" in outcome.detail, outcome.detail
    text = indexed(lorebot)
    assert "6380" in text and "6379" not in text and "Ask Dana" not in text
    assert "office opens in May" in text
    # Older than the look-back (14 days before the cursor) too: the whole history was read.
    assert "printer" not in text and "Old news, posted late" in text


def test_an_ordinary_catch_up_rereads_only_threads_whose_listing_changed(slack, lorebot) -> None:
    replied = slack.add_message("C0ENG", user="U0ANA", text="Where do logs go?", ts=at(BASE, 0))
    slack.add_message("C0ENG", user="U0BEN", text="To Loki", thread_ts=replied, ts=at(BASE, 1))
    quiet = slack.add_message("C0ENG", user="U0ANA", text="Who runs the on-call rota?", ts=at(BASE, 100))
    slack.add_message("C0ENG", user="U0BEN", text="Dana does", thread_ts=quiet, ts=at(BASE, 101))
    lorebot.history.run(["C0ENG"])
    # While the bot listens (events keep threads current), a reply's event is lost on the way.
    slack.add_message("C0ENG", user="U0CAT", text="Retention is 30 days", thread_ts=replied, ts=at(BASE, 200))

    before = len(slack.calls("conversations.replies"))
    outcome = sync_slack_history()

    assert outcome.outcome == "ok" and "whole history" not in outcome.detail, outcome.detail
    assert replies_read(slack, before) == [replied]  # the quiet thread, unchanged, is not read again
    assert "Retention is 30 days" in indexed(lorebot)


def test_the_catch_up_narrows_a_channel_made_private_and_removes_archived_and_deleted_ones(
        slack, lorebot, env) -> None:
    for channel in ("C0ALL", "C0OLD", "C0GONE"):
        slack.add_channel(channel, name=channel.lower())
        slack.add_message(channel, user="U0ANA", text=f"Facts of {channel}")
    lorebot.history.run(["C0ALL", "C0OLD", "C0GONE"], public=True)
    assert {str(d.scope) for d in lorebot.history.ingestor.store.list_documents()} == {"public"}

    slack.add_channel("C0ALL", name="all", is_private=True)
    slack.add_channel("C0OLD", name="old", is_archived=True)
    slack.delete_channel("C0GONE")
    outcome = sync_slack_history()

    assert outcome.outcome == "ok", outcome.detail
    assert "C0ALL" in outcome.detail and "C0OLD" in outcome.detail
    docs = documents(lorebot)
    assert [(str(d.scope), d.title.split(" ")[0]) for d in docs] == [("C0ALL", "#all")]
    state = lorebot.history.sync_state
    assert [(c.channel_id, c.public) for c in state.channels()] == [("C0ALL", False)]


def test_with_keep_archived_the_documents_stay_scoped(slack, env, hashing_embedder) -> None:
    env.setenv("LOREBOT_SLACK_KEEP_ARCHIVED", "true")
    services = build_services(load_settings(), embedder=hashing_embedder)
    try:
        client = slack_client(services.settings, TOKEN)
        sync = build_slack_sync(services, client, who_am_i(client, services.settings.slack_api_url))
        slack.add_message("C0ENG", user="U0ANA", text="Runbook lives in the wiki")
        sync.history.run(["C0ENG"])
        slack.add_channel("C0ENG", name="eng", is_archived=True)
        assert sync_slack_history().outcome == "ok"
        assert [str(d.scope) for d in documents(sync)] == ["C0ENG"]
        sync.gone("C0ENG", deleted=True)
        assert [str(d.scope) for d in documents(sync)] == ["C0ENG"]
        assert sync.history.sync_state.channels() == []
    finally:
        services.close()


def test_the_job_is_scheduled_and_skips_when_nothing_is_listed(env) -> None:
    env.setenv("LOREBOT_SLACK_SYNC_MINUTES", "10")
    [spec] = [s for s in job_specs(load_settings()) if s.id == "slack-sync"]
    assert spec.func_ref == "bot.jobs:sync_slack_history" and spec.schedule == {"minutes": 10} and spec.exclusive
    outcome = sync_slack_history()
    assert outcome.outcome == "skipped" and "ingest-slack" in outcome.detail


def test_a_cursor_keeps_the_scope_it_was_listed_with(open_database) -> None:
    state = SyncState(open_database())
    state.advance("C0ALL", "1772619300.000100", public=True)
    state.advance("C0ALL", "1772619300.000200")  # a later sync that does not say keeps it
    assert state.cursor("C0ALL").public is True
    state.set_public("C0ALL", False)
    assert state.cursor("C0ALL").public is False
    assert state.forget("C0ALL") and state.channels() == []


def full_read_due(sync, channel_id: str = "C0ENG") -> None:
    """Record the channel's last full read as a day and more ago, as if time had passed."""
    sync.history.sync_state.advance(channel_id, None, synced_at=datetime.now(UTC) - timedelta(hours=25),
                                    full_read_at=datetime.now(UTC) - timedelta(hours=25))


def replies_read(slack, since: int) -> list[str]:
    return [c.params["ts"] for c in slack.calls("conversations.replies")[since:]]


def test_a_full_read_finds_old_messages_deleted_or_edited_while_no_event_came(slack, lorebot, env) -> None:
    env.setenv("LOREBOT_SLACK_RECHECK_THREADS", "0")  # only what the listing shows changed is re-read
    replied = slack.add_message("C0ENG", user="U0ANA", text="Where is the VPN config?", ts=at(OLD, 0))
    slack.add_message("C0ENG", user="U0BEN", text="In the vault under vpn-2023", thread_ts=replied, ts=at(OLD, 1))
    wrong = slack.add_message("C0ENG", user="U0CAT", text="Ask Eve for the root password", thread_ts=replied,
                              ts=at(OLD, 2))
    edited_parent = slack.add_message("C0ENG", user="U0ANA", text="Billing runs on the 3rd", ts=at(OLD, 100))
    slack.add_message("C0ENG", user="U0BEN", text="ok", thread_ts=edited_parent, ts=at(OLD, 101))
    untouched = slack.add_message("C0ENG", user="U0ANA", text="Who owns DNS?", ts=at(OLD, 200))
    slack.add_message("C0ENG", user="U0BEN", text="The infra team owns DNS", thread_ts=untouched, ts=at(OLD, 201))
    lonely = slack.add_message("C0ENG", user="U0DAN", text="The printer code is 4471", ts=at(OLD, 300))
    fixed = slack.add_message("C0ENG", user="U0DAN", text="Parking is in lot B", ts=at(OLD, 400))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")  # recent: the cursor is now
    lorebot.history.run(["C0ENG"])
    assert "root password" in indexed(lorebot) and "printer" in indexed(lorebot)

    # The bot is down for all of these, each older than the look-back.
    slack.delete_message("C0ENG", wrong)
    slack.edit_message("C0ENG", edited_parent, "Billing runs on the 5th")
    slack.delete_message("C0ENG", lonely)
    slack.edit_message("C0ENG", fixed, "Parking is in lot C")

    assert sync_slack_history().outcome == "ok"  # an ordinary catch-up: the look-back only
    assert "root password" in indexed(lorebot) and "printer" in indexed(lorebot)

    full_read_due(lorebot)
    before = len(slack.calls("conversations.replies"))
    outcome = sync_slack_history()

    assert outcome.outcome == "ok" and "whole history read: C0ENG" in outcome.detail, outcome.detail
    text = indexed(lorebot)
    assert "root password" not in text and "vpn-2023" in text
    assert "Billing runs on the 5th" in text and "3rd" not in text
    assert "printer" not in text and "lot C" in text and "lot B" not in text
    assert "infra team owns DNS" in text
    # Only the two threads whose listing changed were read again; the unchanged one was not.
    assert sorted(replies_read(slack, before)) == sorted([replied, edited_parent])
    # And the next catch-up, not due a full read, reads none of the old threads.
    before = len(slack.calls("conversations.replies"))
    assert sync_slack_history().outcome == "ok"
    assert replies_read(slack, before) == []


def test_an_old_thread_deleted_whole_is_removed_and_forgotten_by_a_full_read(slack, lorebot) -> None:
    parent = slack.add_message("C0ENG", user="U0ANA", text="Is the staging DB wiped weekly?", ts=at(OLD, 0))
    reply = slack.add_message("C0ENG", user="U0BEN", text="Yes, every Sunday night", thread_ts=parent, ts=at(OLD, 1))
    lorebot.history.run(["C0ENG"])
    assert "every Sunday" in indexed(lorebot)

    slack.delete_message("C0ENG", reply)
    slack.delete_message("C0ENG", parent)  # no reply left: the parent goes, no tombstone
    full_read_due(lorebot)
    assert sync_slack_history().outcome == "ok"

    assert "staging" not in indexed(lorebot) and doc_count(lorebot) == 0
    assert lorebot.history.sync_state.thread_marks("C0ENG") == {}


def test_edited_replies_in_unchanged_old_threads_are_all_found_within_a_few_full_reads(slack, lorebot, env) -> None:
    env.setenv("LOREBOT_SLACK_RECHECK_THREADS", "1")
    replies = []
    for n in range(3):
        parent = slack.add_message("C0ENG", user="U0ANA", text=f"Question {n}?", ts=at(OLD, 100 * n))
        replies.append(slack.add_message("C0ENG", user="U0BEN", text=f"Old answer {n}", thread_ts=parent,
                                         ts=at(OLD, 100 * n + 1)))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")  # recent: the old threads are past the look-back
    lorebot.history.run(["C0ENG"])
    for n, reply in enumerate(replies):  # an edited reply changes nothing the listing shows
        slack.edit_message("C0ENG", reply, f"New answer {n}")

    read_per_run = []
    for _ in range(3):
        full_read_due(lorebot)
        before = len(slack.calls("conversations.replies"))
        assert sync_slack_history().outcome == "ok"
        read_per_run.append(replies_read(slack, before))

    assert [len(run) for run in read_per_run] == [1, 1, 1]
    assert len({ts for run in read_per_run for ts in run}) == 3  # each thread in turn, none twice
    text = indexed(lorebot)
    assert all(f"New answer {n}" in text and f"Old answer {n}" not in text for n in range(3))


def test_a_thread_an_event_updated_is_not_read_again_by_the_full_read(slack, lorebot, env) -> None:
    env.setenv("LOREBOT_SLACK_RECHECK_THREADS", "0")
    parent = slack.add_message("C0ENG", user="U0ANA", text="Which region is prod in?", ts=at(OLD, 0))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")  # recent: the thread is past the look-back
    lorebot.history.run(["C0ENG"])
    reply = slack.add_message("C0ENG", user="U0BEN", text="eu-west-1", thread_ts=parent)
    assert lorebot.on_message(sr.message("eu-west-1", channel="C0ENG", user="U0BEN", ts=reply,
                                               thread_ts=parent)).startswith("thread with 1 replies")

    full_read_due(lorebot)
    before = len(slack.calls("conversations.replies"))
    assert sync_slack_history().outcome == "ok"
    assert replies_read(slack, before) == [] and "eu-west-1" in indexed(lorebot)


def old_message_deleted_unseen(slack, lorebot) -> None:
    """A channel read with one message older than the look-back, which is then deleted while no
    event reaches lorebot; the channel's last full read is recent (an ordinary catch-up is next)."""
    lonely = slack.add_message("C0ENG", user="U0DAN", text="The printer code is 4471", ts=at(OLD, 0))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")
    lorebot.history.run(["C0ENG"])
    slack.delete_message("C0ENG", lonely)


def test_an_event_lorebot_failed_to_apply_makes_the_next_catch_up_read_its_channel_whole(slack, lorebot) -> None:
    slack.add_channel("C0OPS", name="ops")
    slack.add_message("C0OPS", user="U0ANA", text="Pager rota is on the wiki")
    lorebot.history.run(["C0OPS"])
    old_message_deleted_unseen(slack, lorebot)
    assert sync_slack_history().outcome == "ok"
    assert "printer" in indexed(lorebot)  # not due a full read: the look-back only

    slack.fail("conversations.history", error="internal_error")  # the event's one read fails
    assert lorebot.on_message(sr.message("Standup moved", channel="C0ENG", user="U0ANA",
                                         ts=slack.add_message("C0ENG", user="U0ANA", text="Standup moved"))) \
        == "failed"

    outcome = sync_slack_history()
    assert outcome.outcome == "ok" and "whole history read: C0ENG" in outcome.detail, outcome.detail
    assert "C0OPS" not in outcome.detail.split("whole history read:")[1]  # the channel whose event failed only
    assert "printer" not in indexed(lorebot) and "Standup moved" in indexed(lorebot)


def test_a_bot_starting_to_listen_makes_the_next_catch_up_read_whole(slack, lorebot, hashing_embedder) -> None:
    old_message_deleted_unseen(slack, lorebot)
    services = build_services(load_settings(), embedder=hashing_embedder)
    try:  # the bot (re)starts: what happened while none listened came as events to no one
        build_slack_bot(services, SlackCredentials(TOKEN, "s" * 32, None)).close()
    finally:
        services.close()

    outcome = sync_slack_history()
    assert outcome.outcome == "ok" and "whole history read: C0ENG" in outcome.detail, outcome.detail
    assert "printer" not in indexed(lorebot)
    assert "whole history" not in sync_slack_history().detail  # once: the next one reads the look-back


def test_a_thread_read_in_pages_that_repeat_its_parent_counts_it_once(slack, lorebot, env) -> None:
    env.setenv("LOREBOT_SLACK_RECHECK_THREADS", "0")
    slack.workspace.replies_repeat_parent = True
    parent = slack.add_message("C0ENG", user="U0ANA", text="Who approves refunds?", ts=at(OLD, 0))
    for n in range(5):
        slack.add_message("C0ENG", user="U0BEN", text=f"Step {n} of the refund", thread_ts=parent, ts=at(OLD, n + 1))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")
    lorebot.history.options = replace(lorebot.history.options, page_size=2)  # three pages, each with the parent
    lorebot.history.run(["C0ENG"])
    assert indexed(lorebot).count("Who approves refunds?") == 1

    full_read_due(lorebot)
    before = len(slack.calls("conversations.replies"))
    assert sync_slack_history().outcome == "ok"
    assert replies_read(slack, before) == []  # its mark matches the listing: not read again


def test_a_full_read_does_not_write_back_a_group_an_event_rewrote_while_it_read(slack, lorebot) -> None:
    lonely = slack.add_message("C0ENG", user="U0DAN", text="The printer code is 4471", ts=at(OLD, 0))
    slack.add_message("C0ENG", user="U0DAN", text="Copies go on floor 3", ts=at(OLD, 1))
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")
    lorebot.history.run(["C0ENG"])
    full_read_due(lorebot)

    def meanwhile(done: int, total: int) -> None:
        # The full read has listed the history and not written yet; a deletion arrives and is applied.
        slack.delete_message("C0ENG", lonely)
        lorebot.on_message(sr.message_deleted(channel="C0ENG", ts=lonely, user="U0DAN",
                                              previous_text="The printer code is 4471"))

    as_the_job = replace(lorebot.history, options=replace(lorebot.history.options, catch_up=True,
                                                          full_read_every=timedelta(hours=24)))
    report = as_the_job.run(["C0ENG"], progress=meanwhile)

    assert report.ok and report.read_whole == []  # its groups were left out: not a whole read
    text = indexed(lorebot)
    assert "printer" not in text and text.count("floor 3") == 1
    outcome = sync_slack_history()  # so the next catch-up reads the channel whole again
    assert "whole history read: C0ENG" in outcome.detail and "printer" not in indexed(lorebot)


def test_an_old_reply_also_sent_to_the_channel_and_edited_unseen_is_found_by_the_next_full_read(
        slack, lorebot, env) -> None:
    env.setenv("LOREBOT_SLACK_RECHECK_THREADS", "0")  # not by the rotation: by what the listing shows
    parent = slack.add_message("C0ENG", user="U0ANA", text="Which VPN do we use?", ts=at(OLD, 0))
    told = slack.add_message("C0ENG", user="U0BEN", text="WireGuard, config in vault/vpn-old", thread_ts=parent,
                             ts=at(OLD, 1), subtype="thread_broadcast")
    slack.add_message("C0ENG", user="U0CAT", text="Lunch is at noon")
    lorebot.history.run(["C0ENG"])
    slack.edit_message("C0ENG", told, "WireGuard, config in vault/vpn-2026")  # Slack lists the reply: the edit shows

    full_read_due(lorebot)
    assert sync_slack_history().outcome == "ok"

    text = indexed(lorebot)
    assert "vpn-2026" in text and "vpn-old" not in text and text.count("WireGuard") == 1


def test_groups_an_event_could_not_write_leave_the_old_ones_in_place(slack, lorebot, monkeypatch) -> None:
    # A message joins two conversations into one; the index refuses the write (full, locked, down).
    # The second conversation's old document must stay: removing it without writing the joined one
    # would lose its messages until a full read.
    from knowledge.errors import StoreError

    slack.add_message("C0ENG", user="U0ANA", text="Offsite: we book the venue", ts=at(BASE, 0))
    slack.add_message("C0ENG", user="U0CAT", text="Offsite: buses leave at nine", ts=at(BASE, 40))
    lorebot.history.run(["C0ENG"])
    assert doc_count(lorebot) == 2  # 40 minutes apart: two conversations (window 30)

    store = lorebot.history.ingestor.store

    def refuse(rows):
        raise StoreError("the index refused the write")

    monkeypatch.setattr(store, "upsert_documents", refuse)
    bridge = slack.add_message("C0ENG", user="U0DAN", text="Offsite: bring a jacket", ts=at(BASE, 20))
    outcome = lorebot.on_message(sr.message("Offsite: bring a jacket", channel="C0ENG", user="U0DAN", ts=bridge))
    assert outcome == "1 group(s) not written"
    text = indexed(lorebot)  # read by a store of its own
    assert doc_count(lorebot) == 2 and "buses leave at nine" in text and "venue" in text
