"""Fakes at the wire for Slack: a local Web API server (:mod:`.slack_api`) and requests signed and
shaped as Slack sends them to an app (:mod:`.slack_requests`)."""

from tests.fakes.slack_api import Call, FakeSlackAPI, SlackError, SlackIdentity, next_ts
from tests.fakes.slack_requests import (
    Response,
    SlackSender,
    app_home_opened,
    app_mention,
    block_actions_payload,
    command_payload,
    event_callback,
    event_envelope,
    message,
    message_changed,
    message_deleted,
    reaction,
    sign,
    socket_envelope,
    stale_timestamp,
)

__all__ = [
    "Call", "FakeSlackAPI", "Response", "SlackError", "SlackIdentity", "SlackSender", "app_home_opened",
    "app_mention", "block_actions_payload", "command_payload", "event_callback", "event_envelope", "message",
    "message_changed", "message_deleted", "next_ts", "reaction", "sign", "socket_envelope", "stale_timestamp",
]
