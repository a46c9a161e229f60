"""A thread read as context: earlier messages make a follow-up like "and for contractors?" a
standalone question.

The extractive generator cannot rewrite a question, so a follow-up is made standalone the way a
search box would need it: the earlier question it continues, followed by the new words. Retrieval
(BM25 and embeddings) then looks for both, which is what "and for contractors?" means.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from slack_sdk import WebClient

from bot.slack_text import plain_text

log = logging.getLogger(__name__)

_OPENERS = re.compile(
    r"^(and|or|but|also|so|then|what about|how about|what if|same for|same with|and what|plus|except)\b",
    re.IGNORECASE,
)
_REFERRING = frozenset("it its it's that this those these they them their there such same one ones he she".split())
_WORD = re.compile(r"[\w'’]+")
_PAGE_SIZE = 100
_MAX_PAGES = 5  # a thread longer than 500 messages is read from its latest part only


@dataclass(frozen=True)
class ThreadMessage:
    ts: str
    text: str  # plain text, mentions stripped
    from_bot: bool  # lorebot's own earlier answer; another bot's message is someone else's text


def read_thread(
    client: WebClient, *, channel: str, thread_ts: str, before_ts: str, bot_user_id: str | None,
    max_messages: int, max_chars: int, bot_id: str | None = None,
) -> list[ThreadMessage]:
    """The thread's messages before ``before_ts``, oldest first: the latest ``max_messages`` of
    them, fewer if their text would pass ``max_chars``.

    A message is lorebot's own (``from_bot``) only if it carries lorebot's user ID
    (``bot_user_id``) or bot ID (``bot_id``), both from ``auth.test``.
    """
    messages: list[dict] = []
    cursor = None
    for _ in range(_MAX_PAGES):
        page = client.conversations_replies(channel=channel, ts=thread_ts, limit=_PAGE_SIZE, cursor=cursor)
        messages.extend(page.get("messages", []))
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            break
    earlier = [m for m in messages if _ts(m.get("ts")) < _ts(before_ts) and not m.get("subtype", "").endswith("_deleted")]
    kept: list[ThreadMessage] = []
    budget = max_chars
    for m in reversed(earlier[-max_messages:]):
        text = plain_text(m.get("text", ""), bot_user_id=bot_user_id)
        if not text:
            continue
        if len(text) > budget:
            break
        budget -= len(text)
        kept.append(ThreadMessage(ts=m["ts"], text=text, from_bot=is_own_message(m, bot_user_id=bot_user_id, bot_id=bot_id)))
    return list(reversed(kept))


def is_own_message(message: dict, *, bot_user_id: str | None, bot_id: str | None) -> bool:
    """True when lorebot posted ``message``. Any bot, or a person, can post in a thread: what
    another bot wrote must never pass for lorebot's earlier answer (a model would take it as its own).

    >>> mine = {"user": "U0LOREBOT", "bot_id": "B0LOREBOT"}
    >>> [is_own_message(m, bot_user_id="U0LOREBOT", bot_id="B0LOREBOT")
    ...  for m in (mine, {"bot_id": "B0LOREBOT"}, {"user": "U0OTHER", "bot_id": "B0OTHER"}, {"user": "U0ASKER"})]
    [True, True, False, False]
    """
    return bool((bot_user_id and message.get("user") == bot_user_id) or (bot_id and message.get("bot_id") == bot_id))


def standalone_question(question: str, earlier: list[ThreadMessage]) -> str:
    """The question as it would be asked with no thread around it.

    >>> q = [ThreadMessage("1", "How many vacation days do employees get?", False),
    ...      ThreadMessage("2", "Quoted from the documents: 18 days [1]", True)]
    >>> standalone_question("and for contractors?", q)
    'How many vacation days do employees get? and for contractors?'
    >>> standalone_question("How do I expense a flight?", q)
    'How do I expense a flight?'
    """
    context = ""
    for message in earlier:
        if not message.from_bot:
            context = _resolve(message.text, context)
    return _resolve(question, context)


def _resolve(text: str, context: str) -> str:
    return f"{context} {text}" if context and is_follow_up(text) else text


def is_follow_up(text: str) -> bool:
    """True when the words only make sense after an earlier question.

    >>> [is_follow_up(t) for t in ("and for contractors?", "what about it?", "why?",
    ...                             "How many vacation days do contractors get?")]
    [True, True, True, False]
    """
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return False
    if _OPENERS.match(text.strip()) or len(words) <= 3:
        return True
    return len(words) <= 8 and any(w in _REFERRING for w in words)


def _ts(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0
