"""The Slack fakes answer the way Slack does where lorebot depends on it, checked through slack_sdk
and slack_bolt themselves rather than through the fakes' own helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_requests import (
    SlackSender,
    app_mention,
    event_callback,
    sign,
    socket_envelope,
    stale_timestamp,
)

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk routes every request through a proxy named in the environment, 127.0.0.1 included.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlackAPI) -> WebClient:
    return WebClient(base_url=slack.url, token=TOKEN)


def test_a_thread_posted_by_the_bot_reads_back_page_by_page(slack: FakeSlackAPI, client: WebClient) -> None:
    parent = slack.add_message("C1", text="How many vacation days?")
    for n in range(5):
        client.chat_postMessage(channel="C1", thread_ts=parent, text=f"reply {n}")

    # slack_sdk's own pagination follows response_metadata.next_cursor (reusing one response object)
    pages = [(page["has_more"], [m["text"] for m in page["messages"]])
             for page in client.conversations_replies(channel="C1", ts=parent, limit=2)]

    assert pages == [(True, ["How many vacation days?", "reply 0"]), (True, ["reply 1", "reply 2"]),
                     (False, ["reply 3", "reply 4"])]
    thread = slack.messages("C1", thread_ts=parent)
    assert thread[0]["reply_count"] == 5
    assert all(m["bot_id"] == "B0LOREBOT" and m["thread_ts"] == parent for m in thread[1:])
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.conversations_replies(channel="C1", ts="1600000000.000100")


def test_chat_update_changes_the_stored_message(slack: FakeSlackAPI, client: WebClient) -> None:
    # A form-encoded body carries blocks as a JSON string; the fake stores them as objects.
    blocks = json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "Thinking…"}}])
    posted = client.api_call("chat.postMessage", params={"channel": "C1", "text": "Thinking…", "blocks": blocks})

    client.chat_update(channel="C1", ts=posted["ts"], text="18 days", blocks=[])

    [stored] = slack.messages("C1")
    assert (stored["text"], stored["blocks"]) == ("18 days", [])
    assert slack.calls("chat.postMessage")[0].params["blocks"][0]["type"] == "section"
    someone_elses = slack.add_message("C1", text="mine")
    with pytest.raises(SlackApiError, match="cant_update_message"):
        client.chat_update(channel="C1", ts=someone_elses, text="edited by the bot")
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="C1", ts="1600000000.000100", text="?")


@pytest.mark.parametrize(("message", "error"), [
    ({"text": "x" * 40_001}, "msg_too_long"),
    ({"text": "t", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
    ({"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]},
     "invalid_blocks"),
    ({"text": "t", "blocks": [{"type": "actions", "elements": [  # the same action_id twice
        {"type": "button", "action_id": "vote", "text": {"type": "plain_text", "text": "👍"}}] * 2}]},
     "invalid_blocks"),
])
def test_messages_over_slacks_limits_are_refused(client: WebClient, message: dict, error: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", **message)
    assert raised.value.response["error"] == error


def test_a_rate_limited_call_is_retried_after_retry_after(slack: FakeSlackAPI) -> None:
    retrying = WebClient(base_url=slack.url, token=TOKEN,
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    slack.fail("chat.postMessage", status=429, retry_after=0)

    assert retrying.chat_postMessage(channel="C1", text="hi")["ok"]

    assert [c.failed for c in slack.calls("chat.postMessage")] == [True, False]
    assert len(slack.messages("C1")) == 1
    slack.fail("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=slack.url, token=TOKEN).chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert raised.value.response.headers["Retry-After"] == "7"


def test_injected_failures_raise_once_then_clear(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.fail("conversations.info", error="channel_not_found")
    with pytest.raises(SlackApiError) as raised:
        client.conversations_info(channel="C1")
    assert raised.value.response["error"] == "channel_not_found"
    assert client.conversations_info(channel="C1")["channel"]["id"] == "C1"

    slack.fail("auth.test", status=503)
    with pytest.raises(SlackApiError) as raised:
        client.auth_test()
    assert raised.value.response.status_code == 503  # an HTML page, not JSON


def test_a_wrong_or_missing_token_is_refused(slack: FakeSlackAPI) -> None:
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(base_url=slack.url, token="xoxb-wrong").auth_test()
    with pytest.raises(SlackApiError, match="not_authed"):
        WebClient(base_url=slack.url).auth_test()
    assert [(c.token, c.failed) for c in slack.calls("auth.test")] == [("xoxb-wrong", True), (None, True)]


def test_streamed_markdown_accumulates_in_one_message(slack: FakeSlackAPI, client: WebClient) -> None:
    parent = slack.add_message("C1", text="How many vacation days?")
    stream = client.chat_stream(channel="C1", thread_ts=parent, recipient_team_id="T0TEAM",
                                recipient_user_id="U0ASKER", buffer_size=8)
    for piece in ("Employees get ", "18 days ", "of vacation."):
        stream.append(markdown_text=piece)
    stream.stop(blocks=[{"type": "context", "elements": [{"type": "mrkdwn", "text": "Sources: [1]"}]}])

    [reply] = slack.messages("C1", thread_ts=parent)[1:]
    assert reply["text"] == "Employees get 18 days of vacation."
    assert reply["blocks"][0]["type"] == "context"
    assert [c.method for c in slack.calls() if "Stream" in c.method] == [
        "chat.startStream", "chat.appendStream", "chat.appendStream", "chat.stopStream"]
    with pytest.raises(SlackApiError, match="message_not_in_streaming_state"):
        client.chat_appendStream(channel="C1", ts=reply["ts"], markdown_text="more")


def test_delay_and_wait_for(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.delay("auth.test", 0.2)
    started = time.monotonic()
    threading.Thread(target=client.auth_test).start()

    [call] = slack.wait_for("auth.test")

    assert time.monotonic() - started >= 0.2 and not call.failed
    with pytest.raises(AssertionError, match=r"auth\.test×1"):
        slack.wait_for("chat.postMessage", timeout=0.05)


def test_signatures_verify_with_slack_sdk() -> None:
    body = b'{"type":"event_callback"}'
    verifier = SignatureVerifier(SECRET)

    fresh, stale = sign(body, SECRET), sign(body, SECRET, timestamp=stale_timestamp())

    assert verifier.is_valid(body, fresh["X-Slack-Request-Timestamp"], fresh["X-Slack-Signature"])
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
    assert not SignatureVerifier("another-secret").is_valid(body, fresh["X-Slack-Request-Timestamp"],
                                                            fresh["X-Slack-Signature"])


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def _serve(app: App) -> Iterator[str]:
    """A real Bolt app over real HTTP on a free loopback port."""
    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_sender_drives_a_real_bolt_app(slack: FakeSlackAPI) -> None:
    app = App(client=WebClient(base_url=slack.url, token=TOKEN), signing_secret=SECRET)
    retries: list[str | None] = []

    @app.middleware
    def note_retries(request, next):  # noqa: A002 (Bolt's argument name)
        retries.append(request.headers.get("x-slack-retry-num", [None])[0])
        next()

    @app.event("app_mention")
    def mention(event, say):
        say(text="on it", thread_ts=event["ts"])

    @app.command("/lorebot")
    def command(ack, respond, command):
        ack()
        respond(text=f"you asked: {command['text']}")

    @app.action("vote")
    def vote(ack, respond, action):
        ack()
        respond(text=f"voted {action['value']}", replace_original=False)

    with _serve(app) as base_url:
        sender = SlackSender(f"{base_url}/slack/events", SECRET)
        assert sender.url_verification("xyzzy").json() == {"challenge": "xyzzy"}

        ts = slack.add_message("C1", text="<@U0LOREBOT> hi")
        sent = sender.event(app_mention("<@U0LOREBOT> hi", channel="C1", ts=ts))
        assert sent.status == 200 and sent.event_id
        slack.wait_for("chat.postMessage")
        assert slack.messages("C1", thread_ts=ts)[1]["text"] == "on it"
        assert sender.event(app_mention("hi", channel="C1", ts=ts), event_id=sent.event_id, retry_num=1).status == 200
        assert retries[-1] == "1"

        assert sender.event(app_mention("hi", channel="C1"), signature="v0=forged").status == 401
        assert sender.event(app_mention("hi", channel="C1"), timestamp=stale_timestamp()).status == 401
        assert sender.post(b"{}", content_type="application/json", unsigned=True).status == 401

        assert sender.command("vacation", channel_id="C1", response_url=slack.response_url("cmd")).status == 200
        [answer] = slack.wait_for("response_url:cmd")
        assert answer.params["text"] == "you asked: vacation"

        sender.block_action("vote", "up", channel_id="C1", message_ts=ts, response_url=slack.response_url("vote"))
        assert slack.wait_for("response_url:vote")[0].params["text"] == "voted up"
        # on an ephemeral message (no message_ts) Slack sends no message, Bolt still routes the click
        sender.block_action("vote", "down", channel_id="C1", message_ts=None, response_url=slack.response_url("eph"))
        assert slack.wait_for("response_url:eph")[0].params["text"] == "voted down"


def test_a_socket_mode_client_connects_receives_and_acks(slack: FakeSlackAPI) -> None:
    client = SocketModeClient(app_token="xapp-1-test", web_client=WebClient(base_url=slack.url))
    seen: list[str | None] = []
    client.message_listeners.append(lambda _client, message, _raw: seen.append(message.get("type")))

    def ack(client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "ok"}))

    client.socket_mode_request_listeners.append(ack)
    try:
        client.connect()
        envelope = socket_envelope(event_callback(app_mention("hi", channel="C1")))
        slack.socket_send(envelope)

        [acked] = slack.wait_for("socket_ack")
        assert acked.params == {"envelope_id": envelope["envelope_id"], "payload": {"text": "ok"}}
        assert seen[:2] == ["hello", "events_api"]
        assert slack.calls("apps.connections.open")[0].token == "xapp-1-test"
    finally:
        client.close()


# --------------------------------------------------------------------------- channel history


def test_history_pages_newest_first_between_oldest_and_latest(slack: FakeSlackAPI, client: WebClient) -> None:
    stamps = [slack.add_message("C1", text=f"m{n}") for n in range(6)]
    slack.add_message("C1", text="a reply", thread_ts=stamps[0])  # replies stay out of the history

    pages = [[m["text"] for m in page["messages"]]
             for page in client.conversations_history(channel="C1", oldest=stamps[1], latest=stamps[5], limit=2)]
    inclusive = client.conversations_history(channel="C1", oldest=stamps[1], latest=stamps[5], inclusive=True)

    assert pages == [["m4", "m3"], ["m2"]]  # both bounds exclusive by default
    assert [m["text"] for m in inclusive["messages"]] == ["m5", "m4", "m3", "m2", "m1"]
    parent = client.conversations_history(channel="C1", oldest=stamps[0], inclusive=True)["messages"][-1]
    assert (parent["reply_count"], parent["latest_reply"]) == (1, slack.messages("C1", stamps[0])[1]["ts"])


def test_people_edit_and_delete_messages(slack: FakeSlackAPI, client: WebClient) -> None:
    parent = slack.add_message("C1", text="Deploys freeze on Fridays", user="U0ANA")
    reply = slack.add_message("C1", text="and on holidays", user="U0BEN", thread_ts=parent)
    lone = slack.add_message("C1", text="lunch?", subtype="me_message", files=[{"id": "F1"}])

    slack.edit_message("C1", parent, "Deploys freeze on Thursdays")
    slack.delete_message("C1", lone)
    edited = client.conversations_replies(channel="C1", ts=parent)["messages"][0]
    assert edited["text"] == "Deploys freeze on Thursdays" and edited["edited"]["user"] == "U0ANA"
    assert [m["ts"] for m in slack.messages("C1")] == [parent, reply]

    slack.delete_message("C1", parent)  # a parent with replies becomes a tombstone
    tombstone = client.conversations_history(channel="C1")["messages"][0]
    assert (tombstone["subtype"], tombstone["reply_count"]) == ("tombstone", 1)


@pytest.mark.parametrize(("channel", "setup", "error"), [
    ("C0OUT", {"is_member": False}, "not_in_channel"),
    ("G0SECRET", {"is_private": True, "is_member": False}, "channel_not_found"),
])
def test_a_channel_the_bot_is_not_in_cannot_be_read(slack: FakeSlackAPI, client: WebClient, channel: str,
                                                      setup: dict, error: str) -> None:
    slack.add_channel(channel, **setup)
    with pytest.raises(SlackApiError, match=error):
        client.conversations_history(channel=channel)
    with pytest.raises(SlackApiError, match=error):
        client.conversations_replies(channel=channel, ts="1700000000.000100")


def test_a_deleted_channel_is_not_found_and_an_archived_one_says_so(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.add_channel("C0OLD", is_archived=True)
    assert client.conversations_info(channel="C0OLD")["channel"]["is_archived"] is True
    slack.delete_channel("C0GONE")
    for call in (client.conversations_info, client.conversations_history):
        with pytest.raises(SlackApiError, match="channel_not_found"):
            call(channel="C0GONE")


def test_a_rate_limit_answers_429_with_retry_after_until_the_window_frees(slack: FakeSlackAPI,
                                                                           client: WebClient) -> None:
    slack.rate_limit("conversations.history", 2, per_s=1.0)
    client.conversations_history(channel="C1")
    client.conversations_history(channel="C1")
    with pytest.raises(SlackApiError) as raised:
        client.conversations_history(channel="C1")
    assert raised.value.response.status_code == 429 and raised.value.response.headers["Retry-After"] == "1"

    retrying = WebClient(base_url=slack.url, token=TOKEN, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert retrying.conversations_history(channel="C1")["ok"]  # waited out Retry-After
    assert [c.failed for c in slack.calls("conversations.history")] == [False, False, True, True, False]
    slack.rate_limit("conversations.history", None)
    assert all(client.conversations_history(channel="C1")["ok"] for _ in range(5))
