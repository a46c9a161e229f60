"""A local Slack Web API for tests: a real HTTP server that a real ``slack_sdk.WebClient`` talks to.

It plays the part of ``https://slack.com/api/`` closely enough for the bot's own code paths:
bearer-token auth, form/JSON/multipart bodies exactly as ``WebClient`` sends them, message storage
with threads, cursor pagination, channel history (``oldest``/``latest``/``inclusive``), people's edits
and deletions, members and archived or deleted channels, chat streaming, response URLs, Socket Mode
over a WebSocket, and faults (``ratelimited`` 429s with ``Retry-After``, injected or from a per-method
rate limit such as Slack's Tier 3, 5xx pages, ``{"ok": false}`` errors, slowness).

    with FakeSlackAPI() as slack:
        client = WebClient(base_url=slack.url, token="xoxb-test")
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0]["text"] == "hi"

Only 127.0.0.1 is ever bound or referenced. Recorded :class:`Call` headers have lower-cased names.
"""

from __future__ import annotations

import base64
import copy
import email.parser
import email.policy
import hashlib
import itertools
import json
import logging
import math
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

# WebClient sends these as JSON strings inside form bodies (and as objects inside JSON bodies).
JSON_VALUED_PARAMS = frozenset({"blocks", "attachments", "view", "chunks", "metadata", "user_auth_blocks", "prompts"})
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
# Slack's Tier 3 (conversations.history, .replies, .info): about 50 calls a minute per method.
TIER_3_PER_MINUTE = 50
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_OP_CONTINUATION, _OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA

_ts_counter = itertools.count(1)
_ts_lock = threading.Lock()


def next_ts() -> str:
    """A new Slack message timestamp (``%d.%06d``), unique and increasing across the test process.

    One clock for the fake server and the request builders, so seeded human messages, events and
    the bot's replies sort the way they happened.

    >>> a, b = next_ts(), next_ts()
    >>> ts_key(a) < ts_key(b), len(a.split(".")[1])
    (True, 6)
    """
    with _ts_lock:
        n = next(_ts_counter)
    return f"{1_700_000_000 + n // 10_000}.{(n % 10_000) * 100:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps; exact where ``float`` would round 16 digits.

    >>> sorted(["1700000001.000100", "1700000000.900000"], key=ts_key)[0]
    '1700000000.900000'
    """
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


@dataclass(frozen=True)
class Call:
    """One request the fake received, recorded after it was answered (``at`` is its arrival time).

    ``failed`` is true when the answer was not ``{"ok": true}``: an injected fault, bad auth, or a
    Slack error such as ``message_not_found``. ``token`` is the bearer token (or ``token`` param).
    """

    method: str
    params: dict[str, Any]
    token: str | None
    headers: dict[str, str]
    at: float
    failed: bool = False


class SlackError(Exception):
    """A Web API method's ``{"ok": false, "error": ...}`` answer; ``details`` become
    ``response_metadata.messages`` as Slack sends them for ``invalid_blocks``."""

    def __init__(self, error: str, details: list[str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.details = details or []

    def answer(self) -> dict:
        answer: dict[str, Any] = {"ok": False, "error": self.error}
        if self.details:
            answer["response_metadata"] = {"messages": self.details}
        return answer


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    ok: bool = True


def _json_reply(payload: dict, *, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=utf-8",
                                                          **(headers or {})}, ok=bool(payload.get("ok")))


def _response_url_reply(params: dict[str, Any]) -> _Reply:
    """A response URL answers like an incoming webhook: ``ok``-JSON, or HTTP 400 with the error as text."""
    try:
        check_message(params)
    except SlackError as e:
        return _Reply(400, e.error.encode(), {"Content-Type": "text/plain"}, ok=False)
    return _json_reply({"ok": True})


@dataclass
class _Fault:
    error: str
    status: int
    retry_after: int | None
    remaining: int

    def reply(self) -> _Reply:
        """What Slack answers when rate limiting, failing inside, or refusing a call."""
        if self.status == 429:
            # Slack always names the wait; slack_sdk's RateLimitErrorRetryHandler sleeps that long.
            retry_after = 1 if self.retry_after is None else self.retry_after
            return _json_reply({"ok": False, "error": "ratelimited"}, status=429,
                               headers={"Retry-After": str(retry_after)})
        if self.status >= 500:
            page = f"<html><body><h1>{self.status} Server Error</h1></body></html>".encode()
            return _Reply(self.status, page, {"Content-Type": "text/html"}, ok=False)
        extra = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return _json_reply({"ok": False, "error": self.error}, status=self.status, headers=extra)


@dataclass(frozen=True)
class SlackIdentity:
    """The workspace and bot the fake pretends to be (what ``auth.test`` reports)."""

    team_id: str = "T0TEAM"
    team_name: str = "Lorebot Test"
    team_domain: str = "lorebot-test"
    bot_user_id: str = "U0LOREBOT"
    bot_id: str = "B0LOREBOT"
    bot_name: str = "lorebot"
    app_id: str = "A0LOREBOT"


# --------------------------------------------------------------------------- request parsing


def parse_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """One params dict from a query string plus a form, JSON or multipart body, the way Slack
    accepts any of them; JSON-string values of block-like params become objects.

    >>> form = b"blocks=%5B%7B%22type%22%3A%22divider%22%7D%5D"
    >>> parse_params("channel=C1", "application/x-www-form-urlencoded", form)
    {'channel': 'C1', 'blocks': [{'type': 'divider'}]}
    >>> parse_params("", "application/json;charset=utf-8", b'{"text": "hi", "chunks": []}')
    {'text': 'hi', 'chunks': []}
    """
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.partition(";")[0].strip().lower()
    if kind == "application/json" and body:
        params.update(json.loads(body))
    elif kind == "multipart/form-data":
        params.update(_parse_multipart(content_type, body))
    elif body:
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return {k: _decode_json_valued(k, v) for k, v in params.items()}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Form fields of a ``files.upload``-style body; file parts stay bytes."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        fields[str(name)] = data if part.get_filename() else data.decode()
    return fields


def _decode_json_valued(name: str, value: Any) -> Any:
    if name in JSON_VALUED_PARAMS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # Slack would answer invalid_blocks; the recorded call shows what was sent
    return value


def bearer_token(headers: dict[str, str], params: dict[str, Any]) -> str | None:
    """The token a call carries: ``Authorization: Bearer ...`` or, as older clients send, a ``token`` param."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[len("bearer "):].strip()
    token = params.pop("token", None)
    return str(token) if token else None


def _require(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise SlackError("invalid_arguments")
    return value


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(params.get(name) or default)
    except (TypeError, ValueError) as e:
        raise SlackError("invalid_arguments") from e


def _paginate(items: list[dict], params: dict[str, Any], *, max_limit: int = 1000) -> tuple[list[dict], str]:
    """One page of ``items`` and the next cursor (``""`` on the last page), as Slack's cursor paging does."""
    limit = max(1, min(_int_param(params, "limit", max_limit), max_limit))
    start = _decode_cursor(params.get("cursor"))
    end = start + limit
    return items[start:end], (_encode_cursor(end) if end < len(items) else "")


def _within(ts: str, oldest: Any, latest: Any, *, inclusive: bool) -> bool:
    """Whether ``ts`` lies between ``oldest`` and ``latest`` (either may be empty), as history reads them.

    >>> _within("5.000000", "5.000000", None, inclusive=False), _within("5.000000", "5", None, inclusive=True)
    (False, True)
    """
    key = _time_key(ts)
    if oldest and (key < _time_key(oldest) or (key == _time_key(oldest) and not inclusive)):
        return False
    after_latest = key > _time_key(latest) or (key == _time_key(latest) and not inclusive) if latest else False
    return not after_latest


def _time_key(value: Any) -> tuple[int, int]:
    """A ``oldest``/``latest`` bound as a sort key: ``"5"``, ``"5.5"`` and ``"5.500000"`` are times, not strings."""
    seconds, _, fraction = str(value).partition(".")
    try:
        return int(seconds), int((fraction + "000000")[:6])
    except ValueError as e:
        raise SlackError("invalid_ts_oldest") from e


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next_offset:{offset}".encode()).decode()


def _decode_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        kind, _, offset = base64.b64decode(str(cursor)).decode().partition(":")
        if kind == "next_offset":
            return int(offset)
    except ValueError:
        pass
    raise SlackError("invalid_cursor")


def stream_text(params: dict[str, Any]) -> str:
    """The markdown a streaming call adds: ``markdown_text`` plus any ``markdown_text`` chunks."""
    chunks = params.get("chunks") or []
    pieces = [c.get("text", "") for c in chunks if isinstance(c, dict) and c.get("type") == "markdown_text"]
    return str(params.get("markdown_text") or "") + "".join(pieces)


# --------------------------------------------------------------------------- Slack's message limits

MAX_TEXT_CHARS = 40_000
MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS = 50, 100
MAX_MARKDOWN_BLOCK_CHARS = 12_000  # all markdown blocks of one payload together
# (block type, field) -> most characters in that text object; (block type, "elements") -> most items
_BLOCK_LIMITS = {("section", "text"): 3000, ("header", "text"): 150, ("section", "fields"): 10,
                 ("context", "elements"): 10, ("actions", "elements"): 25}
_ELEMENT_LIMITS = {"text": 75, "value": 2000, "action_id": 255, "url": 3000}  # buttons and their kin


def check_message(params: dict[str, Any], *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> None:
    """Refuse a message over Slack's documented limits: ``msg_too_long`` for text, else
    ``invalid_blocks`` with Slack-style ``[ERROR] ... [json-pointer:...]`` details.

    >>> try:
    ...     check_message({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]})
    ... except SlackError as e:
    ...     print(e.error, e.details)
    invalid_blocks ['[ERROR] must be at most 3000 characters [json-pointer:/blocks/0/text]']
    """
    text = params.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
        raise SlackError("msg_too_long")
    if params.get("blocks") is not None:
        problems = block_problems(params["blocks"], max_blocks=max_blocks)
        if problems:
            raise SlackError("invalid_blocks", problems)


def block_problems(blocks: Any, *, max_blocks: int) -> list[str]:
    """What Slack would object to in a list of blocks (empty when it would accept them)."""
    if not isinstance(blocks, list):
        return ["[ERROR] must be an array [json-pointer:/blocks]"]
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"[ERROR] no more than {max_blocks} items allowed [json-pointer:/blocks]")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        problems += _one_block_problems(block, where)
        problems += _duplicate(block.get("block_id"), block_ids, f"{where}/block_id")
        for path, element in _interactive_elements(block):
            problems += _duplicate(element.get("action_id"), action_ids, f"{where}{path}/action_id")
    markdown = sum(len(b.get("text") or "") for b in blocks if b.get("type") == "markdown")
    if markdown > MAX_MARKDOWN_BLOCK_CHARS:
        problems.append(f"[ERROR] markdown blocks must total at most {MAX_MARKDOWN_BLOCK_CHARS} characters")
    return problems


def _one_block_problems(block: dict, where: str) -> list[str]:
    kind, problems = block.get("type"), []
    if len(block.get("block_id") or "") > 255:
        problems.append(f"[ERROR] must be less than 256 characters [json-pointer:{where}/block_id]")
    if kind == "section" and not block.get("text") and not block.get("fields"):
        problems.append(f"[ERROR] must provide either text or fields [json-pointer:{where}]")
    for (limited_kind, name), limit in _BLOCK_LIMITS.items():
        value = block.get(name)
        if kind != limited_kind or value is None:
            continue
        size = len(value) if isinstance(value, list) else len(_text_of(value))
        if size > limit:
            problems.append(f"[ERROR] must be at most {limit} {'items' if isinstance(value, list) else 'characters'}"
                            f" [json-pointer:{where}/{name}]")
    for j, item in enumerate(block.get("fields") or []):
        if len(_text_of(item)) > 2000:
            problems.append(f"[ERROR] must be less than 2001 characters [json-pointer:{where}/fields/{j}]")
    for path, element in _interactive_elements(block):
        problems += _element_problems(element, f"{where}{path}")
    problems += _empty_text_problems(block, where)
    return problems


def _interactive_elements(block: dict) -> list[tuple[str, dict]]:
    """Buttons, menus and the like, with their JSON pointer under the block: an actions block's
    elements or a section's accessory."""
    if block.get("type") in ("actions", "context_actions"):
        return [(f"/elements/{j}", e) for j, e in enumerate(block.get("elements") or []) if isinstance(e, dict)]
    accessory = block.get("accessory")
    return [("/accessory", accessory)] if isinstance(accessory, dict) else []


def _element_problems(element: dict, where: str) -> list[str]:
    problems = []
    for name, limit in _ELEMENT_LIMITS.items():
        value = element.get(name)
        size = len(_text_of(value)) if isinstance(value, dict) else len(value or "")
        if size > limit:
            problems.append(f"[ERROR] must be less than {limit + 1} characters [json-pointer:{where}/{name}]")
    return problems


def _empty_text_problems(value: Any, where: str) -> list[str]:
    """Text objects (``plain_text``/``mrkdwn``) must hold at least one character, anywhere in a block."""
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and not value.get("text"):
            return [f"[ERROR] must be more than 0 characters [json-pointer:{where}/text]"]
        return [p for k, v in value.items() for p in _empty_text_problems(v, f"{where}/{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _empty_text_problems(v, f"{where}/{i}")]
    return []


def _text_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("text") or "")
    return str(value or "")


def _duplicate(value: Any, seen: set[str], where: str) -> list[str]:
    """Slack rejects a message whose block_ids (or action_ids) repeat."""
    if not value:
        return []
    if value in seen:
        return [f"[ERROR] duplicate value {value!r} [json-pointer:{where}]"]
    seen.add(value)
    return []


# --------------------------------------------------------------------------- conversation state


class Workspace:
    """Channels and their messages, changed by the Web API methods the way Slack changes them.

    The methods in :meth:`handlers` take a call's params and return its JSON answer, or raise
    :class:`SlackError`. Callers hold no lock; this class takes its own.
    """

    def __init__(self, identity: SlackIdentity) -> None:
        self.identity = identity
        self._lock = threading.RLock()
        self._messages: dict[str, list[dict]] = {}
        self._channels: dict[str, dict] = {}
        self._members: dict[str, list[str]] = {}
        self._deleted_channels: set[str] = set()
        self._streaming: set[tuple[str, str]] = set()
        self._ephemeral: list[dict] = []
        self._home_views: dict[str, dict] = {}
        # conversations.replies puts the parent at the top of every page, not only the first
        # (Slack has been seen to; a client must not count it twice).
        self.replies_repeat_parent = False

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict]]:
        return {
            "auth.test": self.auth_test,
            "chat.postMessage": self.post_message,
            "chat.update": self.update,
            "chat.delete": self.delete,
            "chat.postEphemeral": self.post_ephemeral,
            "chat.getPermalink": self.permalink,
            "chat.startStream": self.start_stream,
            "chat.appendStream": self.append_stream,
            "chat.stopStream": self.stop_stream,
            "conversations.replies": self.replies,
            "conversations.history": self.history,
            "conversations.info": self.conversation_info,
            "conversations.members": self.conversation_members,
            "users.info": self.user_info,
            "reactions.add": self.add_reaction,
            "reactions.get": self.get_reactions,
            "views.publish": self.publish_view,
        }

    # ---- seeding and reading (used by FakeSlackAPI's public methods)

    def add_channel(self, channel: str, *, name: str | None, is_private: bool, is_im: bool,
                    members: list[str] | None, is_mpim: bool = False, is_ext_shared: bool = False,
                    is_member: bool = True, is_archived: bool = False) -> None:
        with self._lock:
            info = self._channel_object(channel, name=name, is_private=is_private, is_im=is_im,
                                        is_mpim=is_mpim, is_ext_shared=is_ext_shared)
            info.update(is_member=is_member, is_archived=is_archived)
            self._channels[channel] = info
            self._deleted_channels.discard(channel)
            if members is not None:
                self._members[channel] = list(members)

    def delete_channel(self, channel: str) -> None:
        """The channel is gone: every method naming it answers ``channel_not_found``."""
        with self._lock:
            self._deleted_channels.add(channel)

    def edit(self, channel: str, ts: str, text: str) -> None:
        """Its author edits a message: new text and an ``edited`` stamp, the ts unchanged (as Slack keeps it)."""
        with self._lock:
            message = self.find(channel, ts)
            if message is None:
                raise SlackError("message_not_found")
            message["text"] = text
            message["edited"] = {"user": message.get("user") or message.get("bot_id"), "ts": next_ts()}

    def remove(self, channel: str, ts: str) -> None:
        """Delete a message as Slack does: a parent with replies stays as a tombstone so the thread survives."""
        with self._lock:
            message = self.find(channel, ts)
            if message is None:
                raise SlackError("message_not_found")
            if message.get("reply_count"):
                message.clear()
                message.update({"type": "message", "subtype": "tombstone", "text": "This message was deleted.",
                                "ts": ts, "thread_ts": ts, "user": "USLACKBOT", "hidden": True})
                self._refresh_thread_summary(channel, message)
            else:
                self._messages[channel].remove(message)
                parent = self.find(channel, message.get("thread_ts"))
                if parent is not None and parent is not message:
                    self._refresh_thread_summary(channel, parent)

    def store(self, channel: str, message: dict) -> dict:
        """Keep a message; a reply also updates its parent's thread summary, as Slack's parents carry one."""
        with self._lock:
            self._messages.setdefault(channel, []).append(message)
            parent = self.find(channel, message.get("thread_ts"))
            if parent is not None and parent is not message:
                message.setdefault("parent_user_id", parent.get("user"))
                self._refresh_thread_summary(channel, parent)
            return message

    def _refresh_thread_summary(self, channel: str, parent: dict) -> None:
        """``reply_count``, ``reply_users`` and ``latest_reply`` on a parent, as Slack keeps them."""
        replies = [m for m in self.channel_messages(channel) if m.get("thread_ts") == parent["ts"] != m["ts"]]
        for name in ("reply_count", "reply_users", "reply_users_count", "latest_reply"):
            parent.pop(name, None)
        if replies:
            authors = list(dict.fromkeys(m.get("user") or m.get("bot_id") for m in replies))
            parent.update({"thread_ts": parent["ts"], "reply_count": len(replies), "reply_users": authors,
                           "reply_users_count": len(authors), "latest_reply": replies[-1]["ts"]})

    def find(self, channel: str, ts: str | None) -> dict | None:
        with self._lock:
            return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def channel_messages(self, channel: str) -> list[dict]:
        with self._lock:
            return sorted(copy.deepcopy(self._messages.get(channel, [])), key=lambda m: ts_key(m["ts"]))

    def thread(self, channel: str, thread_ts: str) -> list[dict]:
        """A thread's parent and replies, oldest first (deep copies)."""
        return [m for m in self.channel_messages(channel) if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    def ephemeral_messages(self, channel: str | None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemeral if channel in (None, e["channel"])]

    def home_view(self, user_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._home_views.get(user_id))

    def bot_message(self, params: dict[str, Any], *, ts: str) -> dict:
        """A message as Slack stores one posted with the bot token."""
        i = self.identity
        message = {"type": "message", "user": i.bot_user_id, "bot_id": i.bot_id, "app_id": i.app_id,
                   "team": i.team_id, "text": str(params.get("text") or ""), "ts": ts}
        for name in ("thread_ts", "blocks", "attachments", "metadata"):
            if params.get(name) not in (None, ""):
                message[name] = params[name]
        return message

    # ---- Web API methods

    def auth_test(self, params: dict[str, Any]) -> dict:
        i = self.identity
        return {"ok": True, "url": f"https://{i.team_domain}.slack.com/", "team": i.team_name,
                "user": i.bot_name, "team_id": i.team_id, "user_id": i.bot_user_id, "bot_id": i.bot_id,
                "is_enterprise_install": False}

    def post_message(self, params: dict[str, Any]) -> dict:
        channel = _require(params, "channel")
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        check_message(params)
        message = self.store(channel, self.bot_message(params, ts=next_ts()))
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def update(self, params: dict[str, Any]) -> dict:
        channel, ts = _require(params, "channel"), _require(params, "ts")
        check_message(params)
        with self._lock:
            message = self._own_message(channel, ts, refusal="cant_update_message")
            # Slack keeps what an update leaves out: omitted blocks stay, an empty list clears them.
            for name in ("text", "blocks", "attachments", "metadata"):
                if name in params:
                    message[name] = params[name]
            message["edited"] = {"user": self.identity.bot_user_id, "ts": next_ts()}
            return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""),
                    "message": copy.deepcopy(message)}

    def delete(self, params: dict[str, Any]) -> dict:
        channel, ts = _require(params, "channel"), _require(params, "ts")
        with self._lock:
            self._own_message(channel, ts, refusal="cant_delete_message")
            self.remove(channel, ts)
        return {"ok": True, "channel": channel, "ts": ts}

    def post_ephemeral(self, params: dict[str, Any]) -> dict:
        channel, user = _require(params, "channel"), _require(params, "user")
        check_message(params)
        message = self.bot_message(params, ts=next_ts())
        with self._lock:
            self._ephemeral.append({"channel": channel, "user": user, "message": message})
        return {"ok": True, "message_ts": message["ts"]}

    def permalink(self, params: dict[str, Any]) -> dict:
        channel, ts = _require(params, "channel"), _require(params, "message_ts")
        url = f"https://{self.identity.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": url}

    def start_stream(self, params: dict[str, Any]) -> dict:
        channel, thread_ts = _require(params, "channel"), _require(params, "thread_ts")
        message = self.bot_message({"thread_ts": thread_ts}, ts=next_ts())
        message["text"] = stream_text(params)
        with self._lock:
            self.store(channel, message)
            self._streaming.add((channel, message["ts"]))
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def append_stream(self, params: dict[str, Any]) -> dict:
        channel, ts = _require(params, "channel"), _require(params, "ts")
        with self._lock:
            self._streaming_message(channel, ts)["text"] += stream_text(params)
        return {"ok": True, "channel": channel, "ts": ts}

    def stop_stream(self, params: dict[str, Any]) -> dict:
        channel, ts = _require(params, "channel"), _require(params, "ts")
        check_message(params)
        with self._lock:
            message = self._streaming_message(channel, ts)
            message["text"] += stream_text(params)
            for name in ("blocks", "metadata"):
                if params.get(name) is not None:
                    message[name] = params[name]
            self._streaming.discard((channel, ts))
            return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def replies(self, params: dict[str, Any]) -> dict:
        """Parent first, then replies in ts order; a reply's ts reads its whole thread.

        The parent comes only on the first page (or, with ``replies_repeat_parent``, at the top of
        every page, each page holding one reply fewer); later pages continue after the previous one.
        ``oldest``/``latest``/``inclusive`` are not imitated.
        """
        channel, ts = _require(params, "channel"), _require(params, "ts")
        self._check_readable(channel)
        message = self.find(channel, ts)
        if message is None:
            raise SlackError("thread_not_found")
        messages = self.thread(channel, message.get("thread_ts") or ts)
        if self.replies_repeat_parent and messages:
            page, next_cursor = _paginate(messages[1:], {**params, "limit": max(1, _int_param(params, "limit", 1000) - 1)})
            page = [messages[0], *page]
        else:
            page, next_cursor = _paginate(messages, params)
        return {"ok": True, "messages": page, "has_more": bool(next_cursor),
                "response_metadata": {"next_cursor": next_cursor}}

    def history(self, params: dict[str, Any]) -> dict:
        """Top-level messages (not thread replies, but a parent with its thread summary, and a reply
        also sent to the channel), newest first, between ``oldest`` and ``latest`` (both exclusive
        unless ``inclusive``), as Slack pages them."""
        channel = _require(params, "channel")
        self._check_readable(channel)
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = params.get("oldest"), params.get("latest")
        top = [m for m in self.channel_messages(channel)
               if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
               and _within(m["ts"], oldest, latest, inclusive=inclusive)]
        page, next_cursor = _paginate(list(reversed(top)), params, max_limit=999)
        return {"ok": True, "messages": page, "has_more": bool(next_cursor),
                "response_metadata": {"next_cursor": next_cursor}}

    def _check_readable(self, channel: str) -> None:
        """What Slack answers a bot reading a conversation it cannot: gone, or not a member (a
        private one it is not in does not exist, as far as the bot can tell)."""
        with self._lock:
            info = self._channels.get(channel)
            deleted = channel in self._deleted_channels
        if deleted:
            raise SlackError("channel_not_found")
        if info is not None and not info.get("is_member", True):
            raise SlackError("channel_not_found" if info.get("is_private") else "not_in_channel")

    def conversation_info(self, params: dict[str, Any]) -> dict:
        channel = _require(params, "channel")
        with self._lock:
            known = self._channels.get(channel)
            deleted = channel in self._deleted_channels
        if deleted or (known is not None and known.get("is_private") and not known.get("is_member", True)):
            raise SlackError("channel_not_found")
        info = known or self._channel_object(channel, name=None, is_private=channel.startswith("G"),
                                             is_im=channel.startswith("D"))
        return {"ok": True, "channel": copy.deepcopy(info)}

    def conversation_members(self, params: dict[str, Any]) -> dict:
        channel = _require(params, "channel")
        with self._lock:
            members = list(self._members.get(channel, [self.identity.bot_user_id]))
        page, next_cursor = _paginate([{"id": m} for m in members], params)
        return {"ok": True, "members": [m["id"] for m in page], "response_metadata": {"next_cursor": next_cursor}}

    def user_info(self, params: dict[str, Any]) -> dict:
        user = _require(params, "user")
        is_bot = user == self.identity.bot_user_id
        name = self.identity.bot_name if is_bot else user.lower()
        return {"ok": True, "user": {"id": user, "team_id": self.identity.team_id, "name": name, "deleted": False,
                                     "real_name": name, "is_bot": is_bot,
                                     "profile": {"real_name": name, "display_name": name}}}

    def add_reaction(self, params: dict[str, Any]) -> dict:
        """Lenient: a reaction on a message the fake never saw is accepted (and not stored)."""
        channel, ts, name = _require(params, "channel"), _require(params, "timestamp"), _require(params, "name")
        with self._lock:
            message = self.find(channel, ts)
            if message is not None:
                _add_reaction(message, name, self.identity.bot_user_id)
        return {"ok": True}

    def get_reactions(self, params: dict[str, Any]) -> dict:
        """A message and its reactions. Without ``full`` Slack may cut long ``users`` lists short
        (``count`` stays exact); the fake cuts them at 5 so code that needs them all must ask."""
        channel, ts = _require(params, "channel"), _require(params, "timestamp")
        with self._lock:
            message = self.find(channel, ts)
            if message is None:
                raise SlackError("message_not_found")
            message = copy.deepcopy(message)
        if str(params.get("full", "")).lower() not in ("1", "true"):
            for reaction in message.get("reactions", []):
                reaction["users"] = reaction["users"][:5]
        return {"ok": True, "type": "message", "channel": channel, "message": message}

    def react(self, channel: str, ts: str, name: str, user: str, *, added: bool) -> None:
        """A person adds (or removes) a reaction, as Slack records it whether or not an event follows."""
        with self._lock:
            message = self.find(channel, ts)
            if message is None:
                raise SlackError("message_not_found")
            if added:
                _add_reaction(message, name, user)
            else:
                _remove_reaction(message, name, user)

    def publish_view(self, params: dict[str, Any]) -> dict:
        user, view = _require(params, "user_id"), _require(params, "view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        check_message(view, max_blocks=MAX_VIEW_BLOCKS)
        published = {**view, "id": f"V{uuid.uuid4().hex[:10].upper()}", "team_id": self.identity.team_id}
        with self._lock:
            self._home_views[user] = published
        return {"ok": True, "view": copy.deepcopy(published)}

    # ---- helpers

    def _own_message(self, channel: str, ts: str, *, refusal: str) -> dict:
        message = self.find(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != self.identity.bot_id:
            raise SlackError(refusal)  # a bot token can change only the bot's own messages
        return message

    def _streaming_message(self, channel: str, ts: str) -> dict:
        message = self.find(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        if (channel, ts) not in self._streaming:
            raise SlackError("message_not_in_streaming_state")
        return message

    def _channel_object(self, channel: str, *, name: str | None, is_private: bool, is_im: bool,
                        is_mpim: bool = False, is_ext_shared: bool = False) -> dict:
        info = {"id": channel, "created": 1_700_000_000, "is_channel": not is_im and not is_private and not is_mpim,
                "is_group": is_private and not is_im and not is_mpim, "is_im": is_im, "is_mpim": is_mpim,
                "is_private": is_private or is_im or is_mpim,
                # Slack Connect: shared with another organization's workspace.
                "is_shared": is_ext_shared, "is_ext_shared": is_ext_shared, "is_org_shared": False,
                "is_pending_ext_shared": False,
                "is_archived": False, "is_member": True, "context_team_id": self.identity.team_id}
        if not is_im:
            info["name"] = name or channel.lower()
        return info


def _add_reaction(message: dict, name: str, user: str) -> None:
    reactions = message.setdefault("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name), None)
    if reaction is None:
        reactions.append({"name": name, "users": [user], "count": 1})
    elif user in reaction["users"]:
        raise SlackError("already_reacted")
    else:
        reaction["users"].append(user)
        reaction["count"] += 1


def _remove_reaction(message: dict, name: str, user: str) -> None:
    reactions = message.get("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name and user in r["users"]), None)
    if reaction is None:
        raise SlackError("no_reaction")
    reaction["users"].remove(user)
    reaction["count"] -= 1
    if not reaction["count"]:
        reactions.remove(reaction)
    if not reactions:
        message.pop("reactions", None)


# --------------------------------------------------------------------------- WebSocket (Socket Mode)


def websocket_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` answer to a client's key (RFC 6455 section 4.2.2).

    >>> websocket_accept("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()


class _WebSocket:
    """The server end of one WebSocket: reads masked client frames, writes unmasked ones."""

    def __init__(self, rfile: BufferedIOBase, sock: socket.socket) -> None:
        self._rfile = rfile
        self._sock = sock
        self._send_lock = threading.Lock()
        self.open = True

    def send_text(self, text: str) -> None:
        self._send(_OP_TEXT, text.encode())

    def keep_pinging(self, interval: float) -> None:
        """Ping while open, as Slack does. slack_sdk's client holds a lock while it waits up to 3 s
        to receive, and its close() needs that lock: frequent pings make close() prompt."""
        while self.open:
            time.sleep(interval)
            try:
                self._send(_OP_PING, b"fake-slack")
            except OSError:
                return

    def close(self, code: int = 1001, reason: str = "server going away") -> None:
        """Say goodbye with a close frame, then end the TCP connection so the reader stops."""
        if not self.open:
            return
        self.open = False
        try:
            self._send(_OP_CLOSE, struct.pack("!H", code) + reason.encode())
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client already went away

    def serve(self, on_text: Callable[[str], None]) -> None:
        """Answer pings, hand text messages to ``on_text``, until the client closes or leaves."""
        while self.open:
            frame = self._read_message()
            if frame is None:
                break
            opcode, payload = frame
            if opcode == _OP_TEXT:
                on_text(payload.decode())
            elif opcode == _OP_PING:
                self._send(_OP_PONG, payload)  # slack_sdk marks a connection stale without pongs
            elif opcode == _OP_CLOSE:
                self.close(1000, "")
        self.open = False

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            self._sock.sendall(header + payload)

    def _read_message(self) -> tuple[int, bytes] | None:
        """One whole message, joining continuation frames; None when the connection ended."""
        opcode, data = None, b""
        while True:
            frame = self._read_frame()
            if frame is None:
                return None
            fin, frame_opcode, payload = frame
            if frame_opcode >= _OP_CLOSE:
                return frame_opcode, payload  # control frames may arrive between fragments
            opcode = frame_opcode if frame_opcode != _OP_CONTINUATION else opcode
            data += payload
            if fin:
                return opcode or _OP_TEXT, data

    def _read_frame(self) -> tuple[bool, int, bytes] | None:
        head = self._read_exactly(2)
        if head is None:
            return None
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        masked, length = bool(head[1] & 0x80), head[1] & 0x7F
        if length in (126, 127):
            extended = self._read_exactly(2 if length == 126 else 8)
            if extended is None:
                return None
            length = struct.unpack("!H" if len(extended) == 2 else "!Q", extended)[0]
        mask = self._read_exactly(4) if masked else b"\0\0\0\0"
        payload = self._read_exactly(length) if mask is not None and length else b""
        if mask is None or payload is None:
            return None
        return fin, opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def _read_exactly(self, n: int) -> bytes | None:
        try:
            data = self._rfile.read(n)
        except OSError:
            return None
        return data if data is not None and len(data) == n else None


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in delay() or a socket must not block shutdown
    request_queue_size = 128  # Slack takes bursts; the default backlog of 5 drops connections

    def __init__(self, fake: FakeSlackAPI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        try:
            reply = self.server.fake._handle_http(self.path, self._headers(), self._body())
        except Exception as e:  # a bug in the fake: answer, so the client fails fast instead of hanging
            log.exception("fake slack failed on %s", self.path)
            reply = _Reply(500, f"fake slack failed: {e!r}".encode(), {"Content-Type": "text/plain"}, ok=False)
        self._send(reply)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/socket":
            self.server.fake._serve_socket(self)
        else:
            self.do_POST()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("fake slack: " + format, *args)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


class FakeSlackAPI:
    """Slack's Web API, response URLs and Socket Mode on ``127.0.0.1``, in a background thread.

    Use as a context manager; ``url`` is what ``WebClient(base_url=...)`` takes. Methods without
    special behaviour answer ``{"ok": true}``. See the module docstring for an example.
    """

    def __init__(self, *, bot_token: str = "xoxb-test", app_token: str = "xapp-1-test", team_id: str = "T0TEAM",
                 team_name: str = "Lorebot Test", team_domain: str = "lorebot-test", bot_user_id: str = "U0LOREBOT",
                 bot_id: str = "B0LOREBOT", bot_name: str = "lorebot", app_id: str = "A0LOREBOT",
                 socket_ping_interval: float = 0.1) -> None:
        self.bot_token = bot_token
        self.socket_ping_interval = socket_ping_interval
        self.app_token = app_token
        self.identity = SlackIdentity(team_id=team_id, team_name=team_name, team_domain=team_domain,
                                      bot_user_id=bot_user_id, bot_id=bot_id, bot_name=bot_name, app_id=app_id)
        self.workspace = Workspace(self.identity)
        self._handlers = {**self.workspace.handlers(), "apps.connections.open": self._open_connection}
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._limits: dict[str, tuple[int, float, deque[float]]] = {}
        self._sockets: list[_WebSocket] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> FakeSlackAPI:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-slack-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            sockets = list(self._sockets)
        for ws in sockets:
            ws.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlackAPI is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The Web API base URL, e.g. ``http://127.0.0.1:53817/api/``."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        """A ``response_url`` for a slash command or interaction; POSTs to it are recorded as
        ``Call(method="response_url:<name>")``."""
        return f"http://127.0.0.1:{self.port}/response/{name}"

    # ---- recorded calls

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls so far, oldest first, optionally of one method (including failed ones)."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """Block until ``count`` calls of ``method`` were recorded; return all of them so far.

        Raises AssertionError, listing what was recorded instead, when ``timeout`` passes first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self._calls if c.method == method]
                remaining = deadline - time.monotonic()
                if len(found) >= count:
                    return found
                if remaining <= 0:
                    raise AssertionError(f"waited {timeout}s for {count} call(s) of {method}, got {len(found)}; "
                                         f"recorded: {self._summary()}")
                self._cond.wait(remaining)

    def reset_calls(self) -> None:
        with self._cond:
            self._calls.clear()

    # ---- conversation state

    def add_message(self, channel: str, *, user: str | None = None, bot_id: str | None = None, text: str,
                    ts: str | None = None, thread_ts: str | None = None, subtype: str | None = None,
                    **fields: Any) -> str:
        """Seed a message someone else posted (a person by default, ``U0ASKER``); returns its ts.

        ``subtype`` as Slack marks it (``channel_join``, ``bot_message``, ``thread_broadcast``, …);
        ``fields`` are copied in as they are (``files``, ``edited``, ``hidden``, ``bot_profile``, …)."""
        message: dict[str, Any] = {"type": "message", "text": text, "ts": ts or next_ts(),
                                   "team": self.identity.team_id}
        if subtype is not None:
            message["subtype"] = subtype
        if bot_id is not None:
            message["bot_id"] = bot_id
        if user is not None or bot_id is None:
            message["user"] = user or "U0ASKER"
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        message.update(copy.deepcopy(fields))
        return self.workspace.store(channel, message)["ts"]

    def edit_message(self, channel: str, ts: str, text: str) -> None:
        """Its author edits a stored message (no event is sent): the text changes, ``edited`` is stamped."""
        self.workspace.edit(channel, ts, text)

    def delete_message(self, channel: str, ts: str) -> None:
        """Someone deletes a stored message (no event is sent); a parent with replies becomes a tombstone."""
        self.workspace.remove(channel, ts)

    def add_channel(self, channel: str, *, name: str | None = None, is_private: bool = False, is_im: bool = False,
                    members: list[str] | None = None, is_mpim: bool = False, is_ext_shared: bool = False,
                    is_member: bool = True, is_archived: bool = False) -> None:
        """Describe a conversation for ``conversations.info``/``conversations.members``. Unknown ids
        still work: ``C…`` public, ``G…`` private, ``D…`` a DM, with the bot as the only member.
        ``is_mpim``: a group DM; ``is_ext_shared``: a Slack Connect channel. ``is_member=False``:
        the bot is not in it (history answers ``not_in_channel``; a private one is ``channel_not_found``)."""
        self.workspace.add_channel(channel, name=name, is_private=is_private, is_im=is_im, members=members,
                                   is_mpim=is_mpim, is_ext_shared=is_ext_shared, is_member=is_member,
                                   is_archived=is_archived)

    def delete_channel(self, channel: str) -> None:
        """The channel is deleted: ``conversations.info``, ``.history`` and ``.replies`` answer ``channel_not_found``."""
        self.workspace.delete_channel(channel)

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict]:
        """Stored messages in ts order: every one in the channel (top level and replies), or one
        thread's parent and replies when ``thread_ts`` is given. Copies, safe to keep."""
        if thread_ts is not None:
            return self.workspace.thread(channel, thread_ts)
        return self.workspace.channel_messages(channel)

    def ephemeral_messages(self, channel: str | None = None) -> list[dict]:
        """``chat.postEphemeral`` messages as ``{"channel", "user", "message"}``, oldest first."""
        return self.workspace.ephemeral_messages(channel)

    def home_view(self, user_id: str) -> dict | None:
        """The App Home view last published for a user (``views.publish``), or None."""
        return self.workspace.home_view(user_id)

    def react(self, channel: str, ts: str, name: str, *, user: str = "U0ASKER", added: bool = True) -> None:
        """Someone adds (``added=False``: removes) a reaction on a stored message, as Slack records
        it; no event is sent (a test sends one itself, or plays a missed event)."""
        self.workspace.react(channel, ts, name, user, added=added)

    # ---- faults

    def fail(self, method: str, *, error: str = "internal_error", status: int = 200, times: int = 1,
             retry_after: int | None = None) -> None:
        """The next ``times`` calls of ``method`` fail: 429 ``ratelimited`` with ``Retry-After``
        (default 1 s) when ``status=429``; an HTML page for 5xx; else ``{"ok": false, "error": error}``
        with ``status``. Queued faults run in order. Also works for ``response_url:<name>``."""
        with self._cond:
            self._faults.setdefault(method, []).append(_Fault(error, status, retry_after, times))

    def rate_limit(self, method: str, calls: int | None = TIER_3_PER_MINUTE, *, per_s: float = 60.0) -> None:
        """Answer ``method`` as Slack's rate limiter does: at most ``calls`` in any ``per_s`` seconds,
        past that 429 ``ratelimited`` with ``Retry-After`` (whole seconds until a call is allowed again,
        at least 1). Refused calls do not count. Tests scale the window down (``per_s=1``); ``calls=None``
        lifts the limit."""
        with self._cond:
            if calls is None:
                self._limits.pop(method, None)
            else:
                self._limits[method] = (calls, per_s, deque())

    def delay(self, method: str, seconds: float) -> None:
        """Make every later call of ``method`` take ``seconds`` longer (0 clears it)."""
        with self._cond:
            self._delays[method] = seconds

    # ---- Socket Mode

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def wait_socket_connected(self, timeout: float = 10) -> None:
        """Block until a Socket Mode client holds an open WebSocket."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(ws.open for ws in self._sockets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no Socket Mode connection within {timeout}s; recorded: {self._summary()}")
                self._cond.wait(remaining)

    def socket_send(self, envelope: dict, timeout: float = 10) -> None:
        """Send an envelope (``{"envelope_id", "type", "payload", ...}``) to the newest connection."""
        self.wait_socket_connected(timeout)
        with self._cond:
            ws = [ws for ws in self._sockets if ws.open][-1]
        ws.send_text(json.dumps(envelope))

    # ---- request handling (called from handler threads)

    def _handle_http(self, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        arrived = time.time()
        url = urlsplit(path)
        if url.path.startswith("/response/"):
            method, authenticate = f"response_url:{url.path[len('/response/'):]}", False
        elif url.path.startswith("/api/"):
            method, authenticate = url.path[len("/api/"):], True
        else:
            return _json_reply({"ok": False, "error": "unknown_method"}, status=404)
        unreadable = None
        try:
            params = parse_params(url.query, headers.get("content-type", ""), body)
        except ValueError:  # bad JSON or bad UTF-8, which Slack refuses too
            params, unreadable = {"raw": body.decode(errors="replace")}, "invalid_json"
        token = bearer_token(headers, params) if authenticate else None
        reply = self._reply(method, params, token, authenticate=authenticate, unreadable=unreadable)
        self._record(Call(method, params, token, headers, arrived, failed=not reply.ok))
        return reply

    def _reply(self, method: str, params: dict[str, Any], token: str | None, *, authenticate: bool,
               unreadable: str | None) -> _Reply:
        """Faults first (a test asked for them), then auth, then the method itself."""
        fault = self._take_fault(method)
        with self._cond:
            delay = self._delays.get(method, 0)
        if delay:
            time.sleep(delay)
        if fault is not None:
            return fault.reply()
        limited = self._rate_limited(method)
        if limited is not None:
            return limited
        error = (self._check_token(method, token) if authenticate else None) or unreadable
        if error:
            return _json_reply({"ok": False, "error": error})
        if not authenticate:
            return _response_url_reply(params)
        handler = self._handlers.get(method)
        try:
            return _json_reply(handler(params) if handler is not None else {"ok": True})
        except SlackError as e:
            return _json_reply(e.answer())

    def _check_token(self, method: str, token: str | None) -> str | None:
        """Slack's answer to a missing (``not_authed``) or wrong (``invalid_auth``) token."""
        expected = self.app_token if method in APP_TOKEN_METHODS else self.bot_token
        if not token:
            return "not_authed"
        return None if token == expected else "invalid_auth"

    def _rate_limited(self, method: str) -> _Reply | None:
        """A 429 when ``method`` is over its limit (see :meth:`rate_limit`); else the call is counted."""
        now = time.monotonic()
        with self._cond:
            if method not in self._limits:
                return None
            calls, per_s, recent = self._limits[method]
            while recent and recent[0] <= now - per_s:
                recent.popleft()
            if len(recent) < calls:
                recent.append(now)
                return None
            wait = max(1, math.ceil(recent[0] + per_s - now))
        return _Fault("ratelimited", 429, wait, 1).reply()

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _summary(self) -> str:
        counts = Counter(c.method for c in self._calls)
        return ", ".join(f"{m}×{n}" for m, n in counts.items()) or "nothing"

    def _open_connection(self, params: dict[str, Any]) -> dict:
        # Slack's URL carries a one-time ticket; the fake accepts any.
        return {"ok": True, "url": f"{self.socket_url}?ticket={uuid.uuid4()}&app_id={self.identity.app_id}"}

    def _serve_socket(self, handler: _Handler) -> None:
        """Upgrade a GET /socket to a WebSocket, greet with ``hello`` as Slack does, then serve it."""
        key = handler.headers.get("Sec-WebSocket-Key")
        if (handler.headers.get("Upgrade") or "").lower() != "websocket" or not key:
            handler.send_error(400, "expected a WebSocket upgrade")
            return
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", websocket_accept(key))
        handler.end_headers()
        handler.close_connection = True
        ws = _WebSocket(handler.rfile, handler.connection)
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        ws.send_text(json.dumps(self._hello()))
        threading.Thread(target=ws.keep_pinging, args=(self.socket_ping_interval,), daemon=True).start()
        try:
            ws.serve(self._on_socket_text)
        finally:
            with self._cond:
                self._sockets.remove(ws)
                self._cond.notify_all()

    def _hello(self) -> dict:
        with self._cond:
            connections = sum(ws.open for ws in self._sockets)
        return {"type": "hello", "num_connections": connections,
                "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.identity.app_id}}

    def _on_socket_text(self, text: str) -> None:
        """Record what the client sent: an ack (``envelope_id`` + optional ``payload``) or anything else."""
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = {"raw": text}
        method = "socket_ack" if isinstance(message, dict) and "envelope_id" in message else "socket_message"
        self._record(Call(method, message if isinstance(message, dict) else {"raw": message}, None, {}, time.time()))
