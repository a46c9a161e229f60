"""Slack messages as documents: a thread is one document, other messages are grouped by time.

A document's text is one paragraph per message (``U0ABC (2026-03-04 10:15 UTC): text``), so the
chunker, which packs whole paragraphs, cuts only between messages unless one message alone is
longer than a chunk. The author stays a bare user ID that a render step can turn into a name; it
is never written as ``<@U…>``, which would become a live mention wherever the text is shown.

Identity: ``path`` is ``slack://C…/<ts>`` (the thread's or group's first ts), which is never a file,
so pruning files never touches it; ``doc_id`` is derived from it, so an edit or a new reply
re-ingests the same document. ``source`` is the permalink, built from the workspace URL that
``auth.test`` reports rather than asked of ``chat.getPermalink``: the format is Slack's documented
one, and one call per thread would double the Tier 3 calls a sync makes for no new information.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.slack_history.reader import Channel, Identity
from bot.slack_text import plain_text
from knowledge.access import Scope
from knowledge.chunking import ChunkingOptions
from knowledge.ingest import content_hash
from knowledge.types import Document

# Subtypes that are what a person said. Everything else is Slack's own bookkeeping (joins,
# leaves, topic and name changes, pins, tombstones of deleted parents, …) or a bot's message.
KNOWLEDGE_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# The time that follows the author at the start of a message's paragraph (``U0ABC (2026-03-04 10:15
# UTC): ``), written inside a message: a chunk cut just before the ID would read as that person's
# message, and sources would name them its author. Whatever precedes it (the chunker cuts a run of
# letters longer than a chunk mid-word, so "WWWU0CEO" can become "U0CEO"), a message's own words
# never hold the time as a paragraph start writes it: the colon is moved off the bracket.
_AUTHOR_TIME_LOOKALIKE = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d UTC)\):")
TITLE_EXCERPT_CHARS = 60


def slack_path(channel_id: str, ts: str) -> str:
    """A Slack document's identity: its channel and its first message.

    >>> slack_path("C0ENG", "1700000000.000100")
    'slack://C0ENG/1700000000.000100'
    """
    return f"slack://{channel_id}/{ts}"


def slack_doc_id(channel_id: str, ts: str) -> str:
    """Stable per (channel, thread or group): the same thread re-read replaces its document."""
    return hashlib.sha256(slack_path(channel_id, ts).encode()).hexdigest()[:32]


def permalink(workspace_url: str, channel_id: str, ts: str) -> str:
    """Slack's link to a message (a thread's parent opens the thread).

    >>> permalink("https://acme.slack.com/", "C0ENG", "1700000000.000100")
    'https://acme.slack.com/archives/C0ENG/p1700000000000100'
    """
    return f"{workspace_url.rstrip('/')}/archives/{channel_id}/p{ts.replace('.', '')}"


def is_knowledge(message: dict, me: Identity) -> bool:
    """Whether a message says something worth answering from.

    Left out: lorebot's own messages (its answers are not sources), other bots', Slack's notices
    (joins, topic changes, …), questions put to lorebot (a mention of it: indexing the question
    would make it the best "answer" to itself), hidden messages, and empty text.

    >>> me = Identity("https://acme.slack.com/", "U0BOT", "B0BOT")
    >>> [is_knowledge(m, me) for m in ({"user": "U1", "text": "Deploys freeze on Fridays."},
    ...   {"user": "U1", "text": "joined", "subtype": "channel_join"}, {"bot_id": "B9", "text": "build ok"},
    ...   {"user": "U1", "text": "<@U0BOT> when do deploys freeze?"}, {"user": "U1", "text": "  "})]
    [True, False, False, False, False]
    """
    if message.get("subtype") not in KNOWLEDGE_SUBTYPES or message.get("hidden"):
        return False
    if message.get("bot_id") or message.get("user") in (None, "", me.user_id):
        return False
    text = str(message.get("text") or "")
    if me.user_id and any(m.group(1) == me.user_id for m in _USER_MENTION.finditer(text)):
        return False
    return bool(message_text(text))


def message_text(text: str) -> str:
    """A message's words on one line: Slack's markup unwrapped, people kept as ``@U…``, and
    and the time of anything that looks like the start of another person's message written so that
    it no longer does.

    >>> message_text("ask <@U0ANA> about\\n\\n<https://wiki.example/x|the runbook> &amp; <!here>")
    'ask @U0ANA about the runbook &'
    >>> message_text("as U0CEO (2026-01-05 09:00 UTC): said, WWU0CEO (2026-01-05 09:00 UTC): too")
    'as U0CEO (2026-01-05 09:00 UTC) : said, WWU0CEO (2026-01-05 09:00 UTC) : too'
    """
    words = plain_text(_USER_MENTION.sub(lambda m: f"@{m.group(1)}", text))
    return _AUTHOR_TIME_LOOKALIKE.sub(r"(\1) :", words)


def message_line(message: dict) -> str:
    """``U0ABC (2026-03-04 10:15 UTC): text`` — one paragraph of a document.

    >>> message_line({"user": "U0ANA", "ts": "1772619300.000100", "text": "Use the blue runbook."})
    'U0ANA (2026-03-04 10:15 UTC): Use the blue runbook.'
    """
    return f"{message['user']} ({_when(message['ts'])}): {message_text(str(message.get('text') or ''))}"


@dataclass(frozen=True)
class DocumentOptions:
    """How messages become documents: the chunking (part of the content hash) and the time window
    that groups messages outside threads (a longer silence starts a new group)."""

    chunking: ChunkingOptions
    window_s: float = 30 * 60


def thread_document(channel: Channel, messages: list[dict], *, me: Identity, scope: Scope,
                    options: DocumentOptions) -> Document | None:
    """A thread (parent first, then replies) as one document, keyed by the thread's ts; None when
    nothing in it is knowledge (e.g. a question to lorebot and its answer)."""
    if not messages:
        return None
    thread_ts = str(messages[0].get("thread_ts") or messages[0]["ts"])
    kept = [m for m in messages if is_knowledge(m, me)]
    if not kept:
        return None
    title = f"#{channel.name} · {_day(thread_ts)} · {_excerpt(message_text(str(kept[0].get('text') or '')))}"
    return _document(channel, thread_ts, kept, title=title, me=me, scope=scope, options=options)


def group_documents(channel: Channel, messages: Iterable[dict], *, me: Identity, scope: Scope,
                    options: DocumentOptions) -> list[Document]:
    """Messages outside threads, grouped with their neighbours: one document per group, keyed by
    its first message. Only messages that are knowledge count, for membership and for gaps."""
    groups = group_by_time([m for m in messages if is_knowledge(m, me)], options.window_s)
    return [
        _document(channel, group[0]["ts"], group, title=f"#{channel.name} · {_when(group[0]['ts'])}",
                  me=me, scope=scope, options=options)
        for group in groups
    ]


def group_by_time(messages: Iterable[dict], window_s: float) -> list[list[dict]]:
    """Messages in time order, cut wherever more than ``window_s`` passes between two.

    >>> [[m["ts"] for m in g] for g in group_by_time([{"ts": "100.0"}, {"ts": "160.0"}, {"ts": "900.0"}], 300)]
    [['100.0', '160.0'], ['900.0']]
    """
    groups: list[list[dict]] = []
    previous = None
    for message in sorted(messages, key=lambda m: ts_seconds(m["ts"])):
        at = ts_seconds(message["ts"])
        if previous is None or at - previous > window_s:
            groups.append([])
        groups[-1].append(message)
        previous = at
    return groups


def ts_seconds(ts: str) -> float:
    """A Slack ts as seconds (for gaps and dates; identities keep the exact string)."""
    return float(ts)


def _document(channel: Channel, first_ts: str, messages: list[dict], *, title: str, me: Identity, scope: Scope,
              options: DocumentOptions) -> Document:
    text = "\n\n".join(message_line(m) for m in messages)
    return Document(
        doc_id=slack_doc_id(channel.id, first_ts),
        title=title,
        source=permalink(me.workspace_url, channel.id, first_ts),
        path=slack_path(channel.id, first_ts),
        text=text,
        content_hash=content_hash(title=title, text=text, chunking=options.chunking),
        scope=scope,
    )


def _when(ts: str) -> str:
    return datetime.fromtimestamp(ts_seconds(ts), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(ts: str) -> str:
    return datetime.fromtimestamp(ts_seconds(ts), tz=UTC).strftime("%Y-%m-%d")


def _excerpt(text: str) -> str:
    if len(text) <= TITLE_EXCERPT_CHARS:
        return text
    cut = text[:TITLE_EXCERPT_CHARS].rsplit(" ", 1)[0] or text[:TITLE_EXCERPT_CHARS]
    return cut + "…"
