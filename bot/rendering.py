"""Answers as Slack messages: Markdown to mrkdwn, Block Kit, and Slack's size limits.

Slack rejects a message with more than 50 blocks or a section over 3,000 characters
(``msg_blocks_too_long``), and truncates long messages. A long answer is therefore split into
several messages, each inside the limits, never rejected; the sources and the feedback buttons
go with the last one.

Everything shown comes from documents, file names, URLs or a model, so all of it is text to Slack:
escaped (``&``, ``<``, ``>``), its links disarmed to "label (host)". The only live links are
lorebot's own source links (``source_link``), and nothing can mention anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from bot.answering import Answer, Citation, shorten
from bot.people import Names, bare_ids
from bot.slack_sources import (
    SlackSource,
    author_names,
    cited_slack_source,
    excerpt,
    with_names,
)

MAX_SECTION_CHARS = 3_000
MAX_BLOCKS = 50
MAX_MESSAGE_CHARS = 12_000
SOURCE_QUOTE_CHARS = 200
TITLE_CHARS = 150
MAX_LINK_CHARS = 1_000
VOTE_UP, VOTE_DOWN, SHARE = "vote_up", "vote_down", "share_answer"

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
# Links written in text: Markdown's [label](url) and Slack's own <url|label> and <url>.
_LINK = re.compile(r"\[([^\]\n]+)\]\(([A-Za-z][A-Za-z0-9+.-]*:[^)\s]+)\)")
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|<>\s]*)(?:\|([^<>\n]*))?>", re.IGNORECASE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
# C0 controls (but tab and newlines): Slack shows none of them, and \x00/\x01 mark placeholders below.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Plain @channel/@here/@everyone only notify with link_names, which lorebot never sets; a word
# joiner after the @ keeps them inert even if something upstream ever does.
_LOUD = re.compile(r"@(?=channel|here|everyone)", re.IGNORECASE)
_WORD_JOINER, _ZERO_WIDTH_SPACE = "\u2060", "\u200b"
# What a source URL keeps unencoded: the reserved characters of a URL, minus quotes; never <, >, |.
_URL_SAFE = ":/?#[]@!$&()*+,;=%~"


def escape(text: str) -> str:
    """Slack's three control characters, escaped so user text cannot form links or mentions
    (and a plain @here defused).

    >>> escape("a < b & <!channel>")
    'a &lt; b &amp; &lt;!channel&gt;'
    >>> escape("@here")
    '@\\u2060here'
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LOUD.sub("@" + _WORD_JOINER, text)


def source_link(source: str) -> str | None:
    """A source as the URL lorebot links to (ready for ``<URL|label>``), or None where it may not be
    a link: only http(s) with a host, percent-encoded so it holds no ``<``, ``>``, ``|``, space or quote.

    >>> source_link("https://wiki.example/parking|x><!here>.md?a=1&b=2")
    'https://wiki.example/parking%7Cx%3E%3C!here%3E.md?a=1&amp;b=2'
    >>> source_link("javascript:alert(1)"), source_link("hr/leave.md")
    (None, None)
    """
    try:
        parts = urlsplit(source)
        host = parts.hostname
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or len(source) > MAX_LINK_CHARS:
        return None
    url = parts.scheme.lower() + source[len(parts.scheme):]
    return quote(url, safe=_URL_SAFE).replace("&", "&amp;")


def to_mrkdwn(markdown: str) -> str:
    """Markdown (as a generator writes it) in Slack's mrkdwn; code keeps its text (escaped only).

    Text comes from documents and models, so nothing in it is live: a link shows its label and
    its real host, never a disguised target.

    >>> to_mrkdwn("## Leave\\n**18 days** a year, see [policy](https://x.example/p) - *really* <3")
    '*Leave*\\n*18 days* a year, see policy (x.example) - _really_ &lt;3'
    >>> to_mrkdwn("- one\\n- `a**b**`")
    '• one\\n• `a**b**`'
    """
    parts = _CODE.split(_CONTROLS.sub("", markdown))
    # Slack reads &, < and > as control characters even inside code: those are escaped everywhere.
    return "".join(escape(part) if i % 2 else _convert_prose(part) for i, part in enumerate(parts))


def quoted(text: str) -> str:
    """Text from a document shown as it is written (no formatting), with its links disarmed.

    >>> quoted("see [wiki](https://evil.example/x) & *more*")
    'see wiki (evil.example) &amp; *more*'
    """
    links: list[str] = []
    text = _disarm_links(_CONTROLS.sub("", text), links)
    return _restore_links(escape(text), links)


def _convert_prose(text: str) -> str:
    links: list[str] = []
    text = escape(_disarm_links(text, links))
    text = _HEADING.sub(lambda m: f"\x01{m.group(1)}\x01", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _BOLD.sub(lambda m: f"\x01{m.group(2)}\x01", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = text.replace("\x01", "*")  # bold last, so the italic rule never sees it
    return _restore_links(text, links)


def _disarm_links(text: str, links: list[str]) -> str:
    """Every link in ``text`` replaced by a placeholder for "label (host)", already escaped."""

    def keep(label: str | None, url: str) -> str:
        target = _host(url)
        links.append(f"{escape(label)} ({escape(target)})" if label and label.strip() else escape(url))
        return f"\x00{len(links) - 1}\x00"

    text = _SLACK_LINK.sub(lambda m: keep(m.group(2), m.group(1)), text)
    return _LINK.sub(lambda m: keep(m.group(1), m.group(2)), text)


def _restore_links(text: str, links: list[str]) -> str:
    for _ in range(len(links)):  # a link's label may hold another link's placeholder
        if "\x00" not in text:
            break
        text = re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], text)
    return text


def _host(url: str) -> str:
    """Where a link really goes: its host, or the whole URL where it has none (mailto:, javascript:)."""
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def stream_markdown(text: str) -> tuple[str, str]:
    """Model text made safe to stream as Slack *Markdown* (chat streaming takes Markdown, where
    ``[label](url)`` is a link), and the end held back until the next piece shows what it starts.

    &, < and > are escaped (no ``<!here>``, no autolink); a zero-width space after ``]`` before
    ``(`` or ``:`` keeps a link or a link definition from forming; a trailing ``]`` or ``@word`` is
    held back so the next piece cannot complete one. The finished answer, rendered by
    ``to_mrkdwn``, replaces what was streamed.

    >>> stream_markdown("see [wiki](https://evil.example) <!here> [1]")
    ('see [wiki]\\u200b(https://evil.example) &lt;!here&gt; [1', ']')
    """
    held = re.search(r"(?:\]|@[A-Za-z]{0,8})$", text)
    ready, rest = (text[: held.start()], text[held.start():]) if held else (text, "")
    ready = ready.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    ready = re.sub(r"\](?=[(:])", "]" + _ZERO_WIDTH_SPACE, ready)
    return _LOUD.sub("@" + _WORD_JOINER, ready), rest


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of mrkdwn, never ending inside an entity or a ``<…>`` link.

    >>> clip("a &amp; b", 4), clip("x <https://a.example|A>", 8)
    ('a ', 'x ')
    """
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if cut.rfind("&") > cut.rfind(";"):
        cut = cut[: cut.rfind("&")]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut


def one_line(text: str, limit: int = TITLE_CHARS) -> str:
    """A title or name as one escaped line, shortened: it goes inside links and lists."""
    return escape(shorten(_CONTROLS.sub("", text), limit))


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage: blocks plus the plain text Slack shows in notifications."""

    text: str
    blocks: list[dict]


def answer_messages(
    answer: Answer, *, interaction_id: str, shareable: bool = False, heading: str | None = None,
    names: Names | None = None,
) -> list[SlackMessage]:
    """The answer as one or more thread messages, each inside Slack's limits; sources and the
    feedback buttons (their value is the interaction ID) come with the last one.

    ``shareable`` adds a "Share in channel" button (an answer only its asker sees);
    ``heading`` is mrkdwn shown above the answer (who asked what, once shared);
    ``names`` turns a Slack source's authors' user IDs into names (``bot.people.People``;
    without it they show as bare IDs, never as mentions).
    """
    body = [section(piece) for piece in split_text(to_mrkdwn(answer.text), MAX_SECTION_CHARS)]
    if answer.note:
        body.insert(0, {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{escape(answer.note)}_"}]})
    if heading:
        body.insert(0, section(clip(heading, MAX_SECTION_CHARS)))
    tail = _sources(answer, names or bare_ids) + [_buttons(interaction_id, shareable=shareable)]
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
        cut = cut if cut > limit // 2 else _entity_safe(window)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip():
        pieces.append(text)
    return pieces


def _entity_safe(window: str) -> int:
    """Where to cut a window with no better place: not inside an entity such as ``&amp;``."""
    amp = window.rfind("&", len(window) - 5)
    return amp if amp > 0 and ";" not in window[amp:] else len(window)


def section(text: str) -> dict:
    """A Block Kit section of mrkdwn text (at most MAX_SECTION_CHARS)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sources(answer: Answer, names: Names) -> list[dict]:
    texts = {p.chunk_id: p.text for p in answer.passages}
    if answer.citations:
        return [{"type": "divider"}, section("*Sources*"),
                *(_source(f"*[{c.n}]* ", c, texts, names) for c in answer.citations)]
    if answer.consulted:
        # The model cited nothing: show what it was given, without claiming any of it backs the answer.
        return [{"type": "divider"}, section("*Sources consulted* (the answer cites none of them)"),
                *(_source("• ", c, texts, names) for c in answer.consulted)]
    return []


def _source(label: str, c: Citation, texts: dict[str, str], names: Names) -> dict:
    # The authors of what was cited: the passage's messages (the snippet alone where it is all there is).
    slack = cited_slack_source(doc_id=c.doc_id, title=c.title, source=c.source,
                               text=texts.get(c.chunk_id) or c.snippet)
    if slack is None:
        line, snippet = source_line(c.title, c.source), c.snippet
    else:
        line, snippet = slack_source_line(slack, names), with_names(c.snippet, lambda u: clean_name(names(u)))
    return section(clip(f"{label}{line}\n> {quoted(shorten(snippet, SOURCE_QUOTE_CHARS))}", MAX_SECTION_CHARS))


def slack_source_line(source: SlackSource, names: Names, *, title: str | None = None) -> str:
    """A Slack source as mrkdwn: its permalink labelled with the channel and the day, then its
    authors by name (plain text: nobody is mentioned), then the title's excerpt when ``title`` is given.

    >>> s = SlackSource("C0ENG", "eng", "1772619300.000100", ("U0ANA", "U0BEN"), "https://acme.slack.com/archives/C0ENG/p1772619300000100")
    >>> slack_source_line(s, {"U0ANA": "Ana <3", "U0BEN": "@here"}.get, title="#eng · 2026-03-04 · Freeze?")
    '<https://acme.slack.com/archives/C0ENG/p1772619300000100|#eng · 2026-03-04> · Ana &lt;3, @\\u2060here: Freeze?'
    """
    label = f"#{one_line(source.channel_name, 80)} · {source.date}"
    url = source_link(source.permalink)
    line = f"<{url}|{label}>" if url else f"{label} ({one_line(source.permalink, MAX_LINK_CHARS)})"
    if source.authors:
        line += " · " + escape(author_names(source, lambda u: clean_name(names(u)) or u))
    more = excerpt(title or "")
    return f"{line}: {one_line(more)}" if more else line


def clean_name(name: str | None) -> str:
    """A person's name as one short line (it sits inside a source line or a quote).

    >>> clean_name(" Ana\\n  Lopez\\x00 ")
    'Ana Lopez'
    """
    return shorten(_CONTROLS.sub("", name or ""), 80)


def source_line(title: str, source: str) -> str:
    """A document as mrkdwn: a link labelled with its title where its source is a web address
    lorebot may link to, else its title and its source as text.

    >>> source_line("Leave <policy>", "https://wiki.example/leave policy")
    '<https://wiki.example/leave%20policy|Leave &lt;policy&gt;>'
    >>> source_line("Leave", "hr/leave.md")
    'Leave (hr/leave.md)'
    """
    title = one_line(title) or one_line(source) or "(untitled)"
    url = source_link(source)
    if url:
        return f"<{url}|{title}>"
    return f"{title} ({one_line(source, MAX_LINK_CHARS)})" if source.strip() else title


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
    first = next((b["text"]["text"] for b in blocks if b["type"] == "section"), escape(answer.question))
    return clip(first, 300)
