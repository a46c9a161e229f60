"""The app manifest a user installs from and the running bot agree."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.server import EVENTS_PATH
from tests.fakes.slack_api import next_ts

MANIFEST = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "slack-manifest.yml").read_text())


def test_every_subscribed_event_is_handled_not_answered_404(lorebot):
    # An event without a listener gets a 404 from Bolt, and Slack retries it, then disables the app.
    for subscription in MANIFEST["settings"]["event_subscriptions"]["bot_events"]:
        event_type = subscription.split(".")[0]  # message.channels → message
        ts = next_ts()
        event = {"type": event_type, "user": "U0ANNA", "channel": "C0ENGINEER", "ts": ts, "event_ts": ts,
                 "text": "hello",
                 # assistant_* events always carry their thread (Bolt refuses them without one)
                 "assistant_thread": {"user_id": "U0ANNA", "channel_id": "D0ASSIST", "thread_ts": ts, "context": {}}}
        assert lorebot.sender.event(event).status == 200, subscription
    lorebot.finish()


def test_the_manifest_points_slack_at_lorebots_endpoint_with_the_scopes_it_uses():
    settings = MANIFEST["settings"]
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(c["url"] for c in MANIFEST["features"]["slash_commands"])]
    assert all(url.startswith("https://") and url.endswith(EVENTS_PATH) for url in urls)
    assert [c["command"] for c in MANIFEST["features"]["slash_commands"]] == ["/lorebot"]
    assert settings["interactivity"]["is_enabled"] and MANIFEST["features"]["app_home"]["home_tab_enabled"]
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    needed = {"app_mentions:read", "chat:write", "commands", "reactions:read", "channels:history",
              "groups:history", "im:history", "assistant:write"}
    assert needed <= scopes
