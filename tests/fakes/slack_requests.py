"""Requests as Slack sends them to an app: signed Events API envelopes, slash commands, block
actions and URL verification, in the payload shapes of Slack's documentation.

    sender = SlackSender("http://127.0.0.1:3000/slack/events", signing_secret="shh")
    ts = slack.add_message("C0GENERAL", text="<@U0LOREBOT> how many vacation days?")
    sent = sender.event(app_mention("<@U0LOREBOT> how many vacation days?", channel="C0GENERAL", ts=ts))
    sender.event(app_mention(...), event_id=sent.event_id, retry_num=1)   # Slack's retry of it
    sender.event(app_mention(...), signature="v0=forged")                 # fails verification
    sender.event(app_mention(...), timestamp=stale_timestamp())           # replay, 6 minutes old
    sender.post(body, content_type="application/json", unsigned=True)      # no signature headers at all

Builders return plain dicts; ids and timestamps are generated when not given. Requests go only to
loopback addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.fakes.slack_api import next_ts

TEAM_ID = "T0TEAM"
TEAM_DOMAIN = "lorebot-test"
APP_ID = "A0LOREBOT"
BOT_USER_ID = "U0LOREBOT"
ASKER = "U0ASKER"
# Slack still sends the deprecated verification token; Bolt ignores it when signing is on.
VERIFICATION_TOKEN = "legacy-verification-token"
DEFAULT_PATH = "/slack/events"  # Bolt's default Request URL path
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_ids = itertools.count(1)


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers: HMAC-SHA256 of ``v0:{timestamp}:{body}``.

    >>> headers = sign(b"{}", "secret", timestamp=1700000000)
    >>> headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"][:3], len(headers["X-Slack-Signature"])
    ('1700000000', 'v0=', 67)
    """
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def stale_timestamp(seconds_ago: int = 360) -> int:
    """A request timestamp older than the five minutes Slack's verifiers accept (6 minutes by default)."""
    return int(time.time()) - seconds_ago


def new_event_id() -> str:
    """An Events API ``event_id`` like Slack's (``Ev`` + upper-case letters and digits), unique per process."""
    return f"Ev{next(_ids):04d}{uuid.uuid4().hex[:6].upper()}"


def new_trigger_id() -> str:
    """A ``trigger_id`` in Slack's ``<digits>.<digits>.<hex>`` form."""
    return f"{next(_ids)}.{int(time.time())}.{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Response:
    """The app's answer. ``headers`` have lower-cased names; ``event_id`` is set by :meth:`SlackSender.event`."""

    status: int
    headers: dict[str, str]
    body: bytes
    event_id: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class SlackSender:
    """Posts signed requests to an app the way Slack's servers do.

    ``base_url`` is the app's Request URL (``http://127.0.0.1:<port>/slack/events``) or just its
    origin, in which case requests go to ``path`` (Bolt's default ``/slack/events``). Every helper
    takes ``timestamp=`` and ``signature=`` to forge or replay a request.
    """

    def __init__(self, base_url: str, signing_secret: str, *, path: str | None = None,
                 timeout: float = 10) -> None:
        url = urlsplit(base_url)
        if url.hostname not in _LOOPBACK:
            raise ValueError(f"SlackSender only talks to loopback addresses, not {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.signing_secret = signing_secret
        self.path = path or (url.path if url.path not in ("", "/") else DEFAULT_PATH)
        self.timeout = timeout

    def post(self, body: bytes, *, content_type: str, headers: dict[str, str] | None = None,
             timestamp: int | None = None, signature: str | None = None, unsigned: bool = False,
             path: str | None = None) -> Response:
        """POST ``body`` signed with the secret at ``timestamp`` (now by default); ``signature``
        replaces the computed one verbatim; ``unsigned`` sends no signature headers at all."""
        signed = {} if unsigned else sign(body, self.signing_secret, timestamp)
        if signature is not None:
            signed["X-Slack-Signature"] = signature
        all_headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                       **signed, **(headers or {})}
        return self._request("POST", path or self.path, body, all_headers)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Response:
        """An unsigned GET to the app (a health check, not something Slack sends)."""
        return self._request("GET", path, None, headers or {})

    def _request(self, verb: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(verb, path, body=body, headers=headers)
            answer = connection.getresponse()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            connection.close()

    def event(self, event: dict, *, event_id: str | None = None, retry_num: int | None = None,
              retry_reason: str = "http_timeout", team_id: str = TEAM_ID, api_app_id: str = APP_ID,
              timestamp: int | None = None, signature: str | None = None) -> Response:
        """Deliver an event in an ``event_callback`` envelope; with ``retry_num``, as Slack's
        retry of an earlier delivery (same ``event_id``, ``X-Slack-Retry-*`` headers)."""
        envelope = event_callback(event, event_id=event_id, team_id=team_id, api_app_id=api_app_id)
        headers = {} if retry_num is None else {"X-Slack-Retry-Num": str(retry_num),
                                                "X-Slack-Retry-Reason": retry_reason}
        response = self.post(json.dumps(envelope).encode(), content_type="application/json", headers=headers,
                             timestamp=timestamp, signature=signature)
        return replace(response, event_id=envelope["event_id"])

    def command(self, text: str, *, command: str = "/lorebot", channel_id: str, user_id: str = ASKER,
                response_url: str, trigger_id: str | None = None, timestamp: int | None = None,
                signature: str | None = None, **fields: str) -> Response:
        """Invoke a slash command: a form-encoded POST, as Slack sends it."""
        payload = command_payload(text, command=command, channel_id=channel_id, user_id=user_id,
                                  response_url=response_url, trigger_id=trigger_id, **fields)
        return self.post(urlencode(payload).encode(), content_type="application/x-www-form-urlencoded",
                         timestamp=timestamp, signature=signature)

    def block_action(self, action_id: str, value: str, *, user_id: str = ASKER, channel_id: str,
                     message_ts: str | None,
                     response_url: str, container: dict | None = None, timestamp: int | None = None,
                     signature: str | None = None, **options: Any) -> Response:
        """Click a Block Kit element: ``payload=<JSON>`` in a form body. ``message_ts=None`` clicks
        an ephemeral message. ``options`` go to :func:`block_actions_payload`."""
        payload = block_actions_payload(action_id, value, user_id=user_id, channel_id=channel_id,
                                        message_ts=message_ts, response_url=response_url, container=container,
                                        **options)
        return self.post(urlencode({"payload": json.dumps(payload)}).encode(),
                         content_type="application/x-www-form-urlencoded", timestamp=timestamp, signature=signature)

    def url_verification(self, challenge: str, *, timestamp: int | None = None,
                         signature: str | None = None) -> Response:
        """The handshake Slack sends when the Request URL is saved; the app must echo ``challenge``."""
        body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        return self.post(json.dumps(body).encode(), content_type="application/json", timestamp=timestamp,
                         signature=signature)


# --------------------------------------------------------------------------- envelopes and payloads


def event_callback(event: dict, *, event_id: str | None = None, team_id: str = TEAM_ID, api_app_id: str = APP_ID,
                   bot_user_id: str = BOT_USER_ID) -> dict:
    """The Events API envelope around one event.

    >>> envelope = event_callback({"type": "app_mention"}, event_id="Ev1")
    >>> envelope["type"], envelope["event_id"], envelope["event"], envelope["authorizations"][0]["user_id"]
    ('event_callback', 'Ev1', {'type': 'app_mention'}, 'U0LOREBOT')
    """
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


event_envelope = event_callback  # the name scenario tests use


def command_payload(text: str, *, command: str = "/lorebot", channel_id: str, user_id: str = ASKER,
                    response_url: str, trigger_id: str | None = None, channel_name: str | None = None,
                    user_name: str | None = None, team_id: str = TEAM_ID, team_domain: str = TEAM_DOMAIN,
                    api_app_id: str = APP_ID) -> dict[str, str]:
    """A slash command's fields, in the order Slack sends them (form-encoded over HTTP, the
    ``payload`` of a ``slash_commands`` envelope in Socket Mode)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name or ("directmessage" if channel_id.startswith("D") else channel_id.lower()),
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def block_actions_payload(action_id: str, value: str, *, user_id: str = ASKER, channel_id: str,
                          message_ts: str | None, response_url: str, container: dict | None = None,
                          block_id: str = "lorebot_actions", action_type: str = "button", message: dict | None = None,
                          thread_ts: str | None = None,
                          team_id: str = TEAM_ID, team_domain: str = TEAM_DOMAIN, api_app_id: str = APP_ID,
                          trigger_id: str | None = None) -> dict:
    """A ``block_actions`` interaction on a message's element.

    ``message`` defaults to a bare bot message at ``message_ts``; pass the stored one
    (``slack.messages(...)``) for its blocks. With ``message_ts=None`` the click is on an
    ephemeral message (a slash command's reply): Slack then sends no ``message``, only a container
    marked ``is_ephemeral``, and the app can answer only through ``response_url``.
    """
    ephemeral = message_ts is None
    ts = message_ts or next_ts()
    if container is None:
        container = {"type": "message", "message_ts": ts, "channel_id": channel_id, "is_ephemeral": ephemeral}
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
    if message is None and not ephemeral:
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": "B0LOREBOT", "text": "", "ts": ts,
                   "blocks": [], **({"thread_ts": thread_ts} if thread_ts else {})}
    action: dict[str, Any] = {"type": action_type, "action_id": action_id, "block_id": block_id, "value": value,
                              "action_ts": f"{time.time():.6f}"}
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": value, "emoji": True}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_id.lower()},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if message is None:
        del payload["message"]
    return payload


def socket_envelope(payload: dict, *, type: str = "events_api", envelope_id: str | None = None,  # noqa: A002
                    retry_attempt: int = 0, retry_reason: str = "") -> dict:
    """A Socket Mode envelope; ``type`` is ``events_api``, ``slash_commands`` or ``interactive``."""
    envelope = {"envelope_id": envelope_id or str(uuid.uuid4()), "payload": payload, "type": type,
                "accepts_response_payload": type != "events_api"}
    if type == "events_api":
        envelope.update({"retry_attempt": retry_attempt, "retry_reason": retry_reason})
    return envelope


# --------------------------------------------------------------------------- events


def rich_text(text: str) -> list[dict]:
    """The ``rich_text`` block Slack's clients attach to a typed message, mentions as user elements.

    >>> rich_text("<@U0LOREBOT> hi")[0]["elements"][0]["elements"]
    [{'type': 'user', 'user_id': 'U0LOREBOT'}, {'type': 'text', 'text': ' hi'}]
    """
    elements: list[dict] = []
    position = 0
    for match in _MENTION.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position:match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5],
             "elements": [{"type": "rich_text_section", "elements": elements}]}]


def _typed_message(text: str, *, user: str, ts: str, thread_ts: str | None) -> dict:
    message = {"user": user, "type": "message", "ts": ts, "client_msg_id": str(uuid.uuid4()), "text": text,
               "team": TEAM_ID, "blocks": rich_text(text)}
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    return message


def app_mention(text: str, *, channel: str, user: str = ASKER, ts: str | None = None,
                thread_ts: str | None = None) -> dict:
    """An ``app_mention`` event: someone typed ``<@bot>`` in a conversation the bot is in."""
    ts = ts or next_ts()
    return {**_typed_message(text, user=user, ts=ts, thread_ts=thread_ts), "type": "app_mention",
            "channel": channel, "event_ts": ts}


def message(text: str, *, channel: str, user: str | None = ASKER, ts: str | None = None,
            thread_ts: str | None = None, channel_type: str = "channel", subtype: str | None = None,
            bot_id: str | None = None) -> dict:
    """A ``message`` event (``message.channels``/``.groups``/``.im`` by ``channel_type``).

    A bot's message carries ``bot_id`` (and no ``client_msg_id``); ``user=None`` leaves ``user``
    out, as ``bot_message``-subtype messages do.
    """
    ts = ts or next_ts()
    event = {**_typed_message(text, user=user or "", ts=ts, thread_ts=thread_ts), "channel": channel,
             "event_ts": ts, "channel_type": channel_type}
    if user is None:
        del event["user"]
    if bot_id is not None:
        event.pop("client_msg_id")
        event["bot_id"] = bot_id
    if subtype is not None:
        event["subtype"] = subtype
    return event


def message_changed(text: str, *, channel: str, ts: str | None = None, previous_text: str = "",
                    user: str = ASKER, thread_ts: str | None = None, channel_type: str = "channel") -> dict:
    """A ``message_changed`` event: the message at ``ts`` (a new one if not given) was edited to ``text``."""
    ts = ts or next_ts()
    event_ts = next_ts()
    edited = {**_typed_message(text, user=user, ts=ts, thread_ts=thread_ts), "edited": {"user": user, "ts": event_ts}}
    previous = _typed_message(previous_text, user=user, ts=ts, thread_ts=thread_ts)
    return {"type": "message", "subtype": "message_changed", "message": edited, "previous_message": previous,
            "channel": channel, "hidden": True, "ts": event_ts, "event_ts": event_ts, "channel_type": channel_type}


def message_deleted(*, channel: str, ts: str | None = None, previous_text: str = "", user: str = ASKER,
                    thread_ts: str | None = None, channel_type: str = "channel") -> dict:
    """A ``message_deleted`` event for the message at ``ts`` (a new one if not given)."""
    ts = ts or next_ts()
    event_ts = next_ts()
    previous = _typed_message(previous_text, user=user, ts=ts, thread_ts=thread_ts)
    return {"type": "message", "subtype": "message_deleted", "previous_message": previous, "channel": channel,
            "hidden": True, "deleted_ts": ts, "ts": event_ts, "event_ts": event_ts, "channel_type": channel_type}


def reaction(added: bool, reaction: str, *, user: str = ASKER, channel: str, item_ts: str,
             item_user: str = BOT_USER_ID) -> dict:
    """A ``reaction_added`` / ``reaction_removed`` event on the message at ``item_ts``."""
    return {"type": "reaction_added" if added else "reaction_removed", "user": user, "reaction": reaction,
            "item_user": item_user, "item": {"type": "message", "channel": channel, "ts": item_ts},
            "event_ts": next_ts()}


def app_home_opened(user: str, *, channel: str | None = None, tab: str = "home", view: dict | None = None) -> dict:
    """An ``app_home_opened`` event; ``view`` is present only once a Home view was published."""
    event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": channel or f"D{user[1:]}", "tab": tab,
                             "event_ts": next_ts()}
    if view is not None:
        event["view"] = view
    return event
