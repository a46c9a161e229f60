"""Where a question was asked: each kind of conversation told apart from what Slack says, a busy
channel looked up once, and a lookup that fails never holds an answer back (the kind is unknown)."""

from __future__ import annotations

import logging

import pytest
from slack_sdk import WebClient

from bot.app import conversation_lookup_client
from bot.config import load_settings
import time

from bot.conversations import ConversationKinds, conversation_kind, start_lookup
from tests.fakes.slack_api import FakeSlackAPI


@pytest.fixture
def slack():
    with FakeSlackAPI() as fake:
        fake.add_channel("C0GENERAL", name="general")
        fake.add_channel("G0BLUEBIRD", name="bluebird", is_private=True)
        fake.add_channel("D0ASKER", is_im=True)
        fake.add_channel("G0TRIO", is_mpim=True)
        fake.add_channel("C0PARTNER", name="partner-acme", is_ext_shared=True)
        yield fake


@pytest.fixture
def client(slack, tmp_path):
    # As the bot builds it, from settings.
    return conversation_lookup_client(load_settings(data_dir=tmp_path, slack_api_url=slack.url), slack.bot_token)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_kind_of_conversation_is_told_apart(client):
    kinds = ConversationKinds(client)
    assert {c: kinds.kind_of(c) for c in ("C0GENERAL", "G0BLUEBIRD", "D0ASKER", "G0TRIO", "C0PARTNER")} == {
        "C0GENERAL": "public", "G0BLUEBIRD": "private", "D0ASKER": "im", "G0TRIO": "mpim", "C0PARTNER": "shared"}


@pytest.mark.parametrize("flag", ["is_shared", "is_org_shared", "is_pending_ext_shared"])
def test_a_public_channel_shared_outside_the_workspace_in_any_way_is_shared(flag):
    assert conversation_kind({"is_channel": True, "is_private": False, flag: True}) == "shared"


def test_a_conversation_slack_does_not_describe_is_not_taken_for_public():
    assert conversation_kind({"id": "C0NEW", "is_channel": True}) is None


def test_a_busy_channel_costs_one_lookup_every_few_minutes(client, slack):
    clock = Clock()
    kinds = ConversationKinds(client, ttl_s=300, clock=clock)
    for _ in range(20):
        assert kinds.kind_of("C0GENERAL") == "public"
    assert len(slack.calls("conversations.info")) == 1
    slack.add_channel("C0GENERAL", name="general", is_private=True)  # converted to private
    clock.now += 301
    assert kinds.kind_of("C0GENERAL") == "private"
    assert len(slack.calls("conversations.info")) == 2


@pytest.mark.parametrize("fault", [dict(error="missing_scope"), dict(error="channel_not_found"),
                                   dict(status=429, retry_after=30), dict(status=503)])
def test_a_failed_lookup_is_unknown_logged_and_retried_later(client, slack, caplog, fault):
    clock = Clock()
    kinds = ConversationKinds(client, failure_ttl_s=60, clock=clock)
    slack.fail("conversations.info", **fault)
    with caplog.at_level(logging.WARNING, logger="bot.conversations"):
        assert kinds.kind_of("G0BLUEBIRD") is None
    assert any("G0BLUEBIRD" in r.getMessage() for r in caplog.records)
    # A rate limit is not waited out: the answer it would hold back goes out with the kind unknown.
    assert len(slack.calls("conversations.info")) == 1
    clock.now += 61
    assert kinds.kind_of("G0BLUEBIRD") == "private"


def test_an_unreachable_slack_is_unknown_not_an_error(tmp_path):
    client = WebClient(token="xoxb-0", base_url="http://127.0.0.1:9/api/", timeout=1)
    assert ConversationKinds(client).kind_of("C0GENERAL") is None


def test_nothing_to_look_up_with_is_unknown():
    assert start_lookup(None, "C0GENERAL")() is None


def test_a_lookup_runs_beside_the_answer_and_a_remembered_kind_costs_nothing(client, slack):
    # Slack takes 2 s to answer; the caller goes on at once and only waits when it needs the kind.
    slack.delay("conversations.info", 2.0)
    kinds = ConversationKinds(client)
    started = time.monotonic()
    pending = start_lookup(kinds, "G0BLUEBIRD")
    assert time.monotonic() - started < 1.0  # returned long before Slack answered
    assert pending() == "private"
    assert len(slack.calls("conversations.info")) == 1
    assert start_lookup(kinds, "G0BLUEBIRD")() == "private"  # remembered: no second call
    assert len(slack.calls("conversations.info")) == 1
