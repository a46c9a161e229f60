"""Reading Slack: who lorebot is, whether a channel may be read, its history and its threads.

Every call goes through the WebClient the composition root builds (``bot.app.slack_client``),
whose retry handlers wait out a 429 for as long as ``Retry-After`` says: conversations.history,
.replies and .info are Tier 3 (about 50 calls a minute), so a large channel is read slowly but
whole, never with a gap where a page was refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.conversations import conversation_kind
from knowledge.errors import ConfigurationError
from training.feedback import DIRECT_MESSAGE, GROUP_MESSAGE, PUBLIC_CHANNEL

# Slack advises pages of at most 200 for conversations.history and .replies.
DEFAULT_PAGE_SIZE = 200


@dataclass(frozen=True)
class Identity:
    """The workspace and the bot, from ``auth.test``: where permalinks point, and whose messages
    are lorebot's own (never indexed: its answers are not knowledge)."""

    workspace_url: str
    user_id: str
    bot_id: str | None


@dataclass(frozen=True)
class Channel:
    """A channel lorebot may read, as ``conversations.info`` described it."""

    id: str
    name: str
    kind: str | None

    @property
    def is_public(self) -> bool:
        """Public and not shared outside the workspace (``conversation_kind``'s ``public``)."""
        return self.kind == PUBLIC_CHANNEL


class ChannelUnreadable(Exception):
    """A channel that is not read, with the reason the summary shows."""

    def __init__(self, channel_id: str, reason: str):
        super().__init__(f"{channel_id}: {reason}")
        self.channel_id, self.reason = channel_id, reason


def who_am_i(client: WebClient, api_url: str) -> Identity:
    """Who lorebot is in this workspace (``auth.test``); see :func:`auth_test`."""
    data = auth_test(client, api_url)
    return Identity(workspace_url=str(data.get("url") or ""), user_id=str(data.get("user_id") or ""),
                    bot_id=data.get("bot_id"))


def auth_test(client: WebClient, api_url: str) -> dict:
    """``auth.test``'s answer; a refused token or an unreachable Slack is one clear ConfigurationError."""
    try:
        return client.auth_test().data  # type: ignore[return-value]
    except SlackApiError as e:
        raise ConfigurationError(
            f"Slack refused SLACK_BOT_TOKEN ({e.response.get('error')}): check the token and that the app is installed"
        ) from e
    except (SlackClientError, OSError) as e:
        raise ConfigurationError(f"could not reach Slack at {api_url} (SLACK_API_URL): {e}") from e


# What each refusal from Slack means for the person who listed the channel.
_REASONS = {
    "channel_not_found": "channel_not_found: no such channel, or a private one lorebot is not in",
    "not_in_channel": "not_in_channel: invite lorebot to the channel first (/invite @lorebot)",
    "missing_scope": "missing_scope: the app needs channels:history, groups:history and channels:read, groups:read (deploy/slack-manifest.yml)",
}


def open_channel(client: WebClient, channel_id: str) -> Channel:
    """The channel, if lorebot may index it: it exists, is not a DM or group DM, is not archived,
    and lorebot is a member. Raises :class:`ChannelUnreadable` with the reason otherwise."""
    try:
        info = client.conversations_info(channel=channel_id).get("channel") or {}
    except SlackApiError as e:
        raise ChannelUnreadable(channel_id, refusal(e)) from e
    return readable_channel(channel_id, info)


def readable_channel(channel_id: str, info: dict) -> Channel:
    """:func:`open_channel` on what ``conversations.info`` already said (the catch-up asks once)."""
    kind = conversation_kind(info)
    if kind == DIRECT_MESSAGE:
        raise ChannelUnreadable(channel_id, "is a DM: only channels are indexed")
    if kind == GROUP_MESSAGE:
        raise ChannelUnreadable(channel_id, "is a group DM: only channels are indexed")
    if info.get("is_archived"):
        raise ChannelUnreadable(channel_id, "archived: its history is not indexed")
    if not info.get("is_member"):
        raise ChannelUnreadable(channel_id, _REASONS["not_in_channel"])
    return Channel(id=channel_id, name=str(info.get("name") or channel_id), kind=kind)


def refusal(error: SlackApiError) -> str:
    """Slack's error code, explained where the fix is known."""
    code = str(error.response.get("error") or f"HTTP {error.response.status_code}")
    return _REASONS.get(code, code)


def history(client: WebClient, channel_id: str, *, oldest: str | None = None, latest: str | None = None,
            page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[dict]:
    """Top-level messages (thread parents carry ``reply_count``/``latest_reply``), newest first,
    strictly after ``oldest`` and before ``latest``; every page, following the cursor."""
    bounds = {k: v for k, v in (("oldest", oldest), ("latest", latest)) if v}
    # slack_sdk's response iterates page by page, asking with response_metadata.next_cursor.
    for page in client.conversations_history(channel=channel_id, limit=page_size, **bounds):
        yield from page.get("messages") or []


def thread(client: WebClient, channel_id: str, thread_ts: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> list[dict]:
    """A thread's parent and replies, oldest first, each once; empty when Slack no longer has it."""
    messages: dict[str, dict] = {}
    try:
        for page in client.conversations_replies(channel=channel_id, ts=thread_ts, limit=page_size):
            for message in page.get("messages") or []:
                # Slack may repeat the parent at the top of every page: counted once, or a thread
                # of many pages would show its parent again and never match its listing's reply count.
                messages.setdefault(str(message.get("ts")), message)
    except SlackApiError as e:
        if e.response.get("error") == "thread_not_found":
            return []
        raise
    return list(messages.values())
