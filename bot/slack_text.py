"""Slack's message markup turned back into the words a person typed."""

from __future__ import annotations

import html
import re

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_MENTION = re.compile(r"<#[CG][A-Z0-9]+\|([^>]*)>")
_LABELLED_LINK = re.compile(r"<(?:https?|mailto):[^|>]+\|([^>]+)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^>]+)>")
_SPECIAL = re.compile(r"<!(?:here|channel|everyone)(?:\|[^>]*)?>|<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")


def plain_text(text: str, *, bot_user_id: str | None = None) -> str:
    """What the user wrote, without the bot's mention and with Slack's markup unwrapped.

    Other people's mentions are dropped too: an ID like U024BE7LH means nothing to a search.

    >>> plain_text("<@U0BOT> how many days? see <https://x.example/pto|PTO> in <#C0HR|hr> &amp; <!here>", bot_user_id="U0BOT")
    'how many days? see PTO in #hr &'
    """
    text = _USER_MENTION.sub("", text)
    text = _CHANNEL_MENTION.sub(lambda m: f"#{m.group(1)}" if m.group(1) else "", text)
    text = _LABELLED_LINK.sub(r"\1", text)
    text = _BARE_LINK.sub(r"\1", text)
    text = _SPECIAL.sub(lambda m: m.group(1) or "", text)
    return " ".join(html.unescape(text).split())


def mentions(text: str, user_id: str | None) -> bool:
    """True when the message mentions this user (the bot).

    >>> mentions("hey <@U0BOT> there", "U0BOT"), mentions("hey", "U0BOT")
    (True, False)
    """
    return bool(user_id) and any(m.group(1) == user_id for m in _USER_MENTION.finditer(text or ""))
