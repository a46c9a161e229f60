"""Answers as Slack messages: Markdown to mrkdwn, Block Kit, and Slack's size limits.

Slack rejects a message with more than 50 blocks or a section over 3,000 characters
(``msg_blocks_too_long``), and truncates long messages. A long answer is therefore split into
several messages, each inside the limits, never rejected; the sources and the feedback buttons
go with the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.answering import Answer, Citation, shorten

MAX_SECTION_CHARS = 3_000
MAX_BLOCKS = 50
MAX_MESSAGE_CHARS = 12_000
SOURCE_QUOTE_CHARS = 200
VOTE_UP, VOTE_DOWN, SHARE = "vote_up", "vote_down", "share_answer"

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)


def escape(text: str) -> str:
    """Slack's three control characters, escaped so user text cannot form links or mentions.

    >>> escape("a < b & <!channel>")
    'a &lt; b &amp; &lt;!channel&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Markdown (as a generator writes it) in Slack's mrkdwn; code keeps its text (escaped only).

    >>> to_mrkdwn("## Leave\\n**18 days** a year, see [policy](https://x.example/p) - *really* <3")
    '*Leave*\\n*18 days* a year, see <https://x.example/p|policy> - _really_ &lt;3'
    >>> to_mrkdwn("- one\\n- `a**b**`")
    '• one\\n• `a**b**`'
    """
    parts = _CODE.split(markdown)
    # Slack reads &, < and > as control characters even inside code: those are escaped everywhere.
    return "".join(escape(part) if i % 2 else _convert_prose(part) for i, part in enumerate(parts))


def _convert_prose(text: str) -> str:
    links: list[str] = []

    def keep_link(match: re.Match) -> str:
        links.append(f"<{match.group(2)}|{escape(match.group(1))}>")
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(keep_link, text)
    text = escape(text)
    text = _HEADING.sub(lambda m: f"\x01{m.group(1)}\x01", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _BOLD.sub(lambda m: f"\x01{m.group(2)}\x01", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = text.replace("\x01", "*")  # bold last, so the italic rule never sees it
    return re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], text)


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage: blocks plus the plain text Slack shows in notifications."""

    text: str
    blocks: list[dict]


def answer_messages(
    answer: Answer, *, interaction_id: str, shareable: bool = False, heading: str | None = None
) -> list[SlackMessage]:
    """The answer as one or more thread messages, each inside Slack's limits; sources and the
    feedback buttons (their value is the interaction ID) come with the last one.

    ``shareable`` adds a "Share in channel" button (an answer only its asker sees);
    ``heading`` is mrkdwn shown above the answer (who asked what, once shared).
    """
    body = [section(piece) for piece in split_text(to_mrkdwn(answer.text), MAX_SECTION_CHARS)]
    if answer.note:
        body.insert(0, {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{escape(answer.note)}_"}]})
    if heading:
        body.insert(0, section(heading[:MAX_SECTION_CHARS]))
    tail = _sources(answer) + [_buttons(interaction_id, shareable=shareable)]
    messages: list[list[dict]] = [[]]
    for block in body + tail:
        current = messages[-1]
        if current and (len(current) + 1 > MAX_BLOCKS or _chars(current) + _block_chars(block) > MAX_MESSAGE_CHARS):
            messages.append([])
        messages[-1].append(block)
    return [SlackMessage(text=_fallback(blocks, answer), blocks=blocks) for blocks in messages]


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at a paragraph, line, sentence or word.

    >>> split_text("one two three", 8)
    ['one two', 'three']
    """
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(". ") + 1, window.rfind(" "))
        cut = cut if cut > limit // 2 else limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip():
        pieces.append(text)
    return pieces


def section(text: str) -> dict:
    """A Block Kit section of mrkdwn text (at most MAX_SECTION_CHARS)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sources(answer: Answer) -> list[dict]:
    if answer.citations:
        return [{"type": "divider"}, section("*Sources*"),
                *(_source(f"*[{c.n}]* ", c) for c in answer.citations)]
    if answer.consulted:
        # The model cited nothing: show what it was given, without claiming any of it backs the answer.
        return [{"type": "divider"}, section("*Sources consulted* (the answer cites none of them)"),
                *(_source("• ", c) for c in answer.consulted)]
    return []


def _source(label: str, c: Citation) -> dict:
    title = escape(c.title)
    link = f"<{c.source}|{title}>" if c.source.startswith(("http://", "https://")) else f"{title} ({escape(c.source)})"
    snippet = escape(shorten(c.snippet, SOURCE_QUOTE_CHARS))
    return section(f"{label}{link}\n> {snippet}"[:MAX_SECTION_CHARS])


def _buttons(interaction_id: str, *, shareable: bool) -> dict:
    elements = [_button(VOTE_UP, "👍 Helpful", interaction_id), _button(VOTE_DOWN, "👎 Not helpful", interaction_id)]
    if shareable:
        elements.insert(0, {**_button(SHARE, "Share in channel", interaction_id), "style": "primary"})
    return {"type": "actions", "block_id": "lorebot_feedback", "elements": elements}


def _button(action_id: str, label: str, value: str) -> dict:
    return {"type": "button", "action_id": action_id, "value": value,
            "text": {"type": "plain_text", "text": label, "emoji": True}}


def _block_chars(block: dict) -> int:
    text = block.get("text")
    return len(text["text"]) if isinstance(text, dict) else 0


def _chars(blocks: list[dict]) -> int:
    return sum(_block_chars(b) for b in blocks)


def _fallback(blocks: list[dict], answer: Answer) -> str:
    """Notification text: the message's first words (Slack requires text beside blocks)."""
    first = next((b["text"]["text"] for b in blocks if b["type"] == "section"), answer.question)
    return first[:300]
