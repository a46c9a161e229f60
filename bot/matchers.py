"""Named predicates on Slack events: which messages lorebot may answer and which it must ignore."""

from __future__ import annotations

from bot.slack_text import mentions

# Message subtypes that are still a person writing; every other subtype (edits, deletions,
# joins, bot posts, channel topic changes…) is not a question.
_PEOPLE_SUBTYPES = {None, "thread_broadcast", "file_share"}


def is_person_writing(event: dict) -> bool:
    """A new message by a person: not a bot (lorebot above all), not an edit or a deletion."""
    return event.get("subtype") in _PEOPLE_SUBTYPES and not event.get("bot_id") and bool(event.get("user"))


def is_direct_message(event: dict) -> bool:
    """In the bot's DM or its assistant pane (both are ``im`` conversations)."""
    return event.get("channel_type") == "im"


def is_reply_in_thread(event: dict) -> bool:
    return bool(event.get("thread_ts")) and event.get("thread_ts") != event.get("ts")


def mentions_bot(event: dict, bot_user_id: str | None) -> bool:
    """The ``app_mention`` event answers these; the ``message`` copy of them is not a follow-up."""
    return mentions(event.get("text", ""), bot_user_id)


def is_home_tab(event: dict) -> bool:
    return event.get("tab", "home") == "home"


def message_key(event: dict) -> str | None:
    """The key one posted message has in every event that carries it (``app_mention`` and
    ``message`` alike): its channel and ts."""
    channel, ts = event.get("channel"), event.get("ts")
    return f"message:{channel}:{ts}" if channel and ts else None
