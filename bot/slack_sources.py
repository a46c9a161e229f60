"""What a Slack source is, for showing it: its channel, its authors, its date and its permalink.

A Slack document's path is ``slack://C…/<first ts>`` (``bot/slack_history/documents.py``); its text
is one paragraph per message, ``U0ABC (2026-03-04 10:15 UTC): text``, so the authors are read back
from the text. A citation carries no path, only its document's ID and source (the permalink): it is
a Slack source when the permalink names a channel and a ts whose ``slack://`` path has that very
document ID, which no web page linking to Slack can fake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bot.slack_history.documents import slack_doc_id
from knowledge.stores.base import VectorStore
from knowledge.types import DocumentInfo

SLACK_SCHEME = "slack://"
_PATH = re.compile(r"slack://([A-Z0-9]+)/(\d+\.\d+)")
_PERMALINK = re.compile(r"/archives/([A-Z0-9]+)/p(\d+)(\d{6})")
# A message's paragraph as the document writes it: the author, the time, then the words.
_AUTHOR_LINE = re.compile(r"^([UW][A-Z0-9]{2,}) \((\d{4}-\d\d-\d\d \d\d:\d\d UTC)\): ", re.MULTILINE)
_MENTION = re.compile(r"(?<![\w@])@([UW][A-Z0-9]{2,})\b")
MAX_AUTHORS_SHOWN = 3


@dataclass(frozen=True)
class SlackSource:
    """A Slack document (or one cited passage of it) as a reader is shown it."""

    channel_id: str
    channel_name: str  # without the #; the channel ID where the title does not say
    first_ts: str
    authors: tuple[str, ...]  # user IDs, in order of first appearance
    permalink: str

    @property
    def date(self) -> str:
        """The day the thread or conversation began (UTC), as the title writes it."""
        return datetime.fromtimestamp(float(self.first_ts), tz=UTC).strftime("%Y-%m-%d")


def is_slack_path(path: str) -> bool:
    return path.startswith(SLACK_SCHEME)


def parse_path(path: str) -> tuple[str, str] | None:
    """The channel and first ts of a ``slack://`` path, else None.

    >>> parse_path("slack://C0ENG/1772619300.000100"), parse_path("hr/leave.md")
    (('C0ENG', '1772619300.000100'), None)
    """
    match = _PATH.fullmatch(path)
    return (match.group(1), match.group(2)) if match else None


def authors_in(text: str) -> tuple[str, ...]:
    """The user IDs that begin the text's message paragraphs, each once, in order.

    >>> authors_in("U0ANA (2026-03-04 10:15 UTC): when?\\n\\nU0BEN (2026-03-04 10:16 UTC): Friday, U0ANA (x): no")
    ('U0ANA', 'U0BEN')
    """
    return tuple(dict.fromkeys(m.group(1) for m in _AUTHOR_LINE.finditer(text)))


def channel_name(title: str, channel_id: str) -> str:
    """The channel's name as the title begins (``#eng · 2026-03-04 · …``), else its ID.

    >>> channel_name("#eng · 2026-03-04 · Deploys?", "C0ENG"), channel_name("Deploys", "C0ENG")
    ('eng', 'C0ENG')
    """
    if title.startswith("#"):
        name = title[1:].split(" · ", 1)[0].strip()
        if name:
            return name
    return channel_id


def excerpt(title: str) -> str:
    """What the title says beyond the channel and the day (a thread's first words), or ''.

    >>> excerpt("#eng · 2026-03-04 · Does the freeze start Friday?"), excerpt("#eng · 2026-03-04 10:15 UTC")
    ('Does the freeze start Friday?', '')
    """
    parts = title.split(" · ", 2)
    return parts[2].strip() if title.startswith("#") and len(parts) == 3 else ""


def slack_source(*, path: str, title: str, source: str, text: str) -> SlackSource | None:
    """A document as a Slack source, or None where its path is not ``slack://``."""
    parsed = parse_path(path)
    if parsed is None:
        return None
    channel_id, ts = parsed
    return SlackSource(channel_id=channel_id, channel_name=channel_name(title, channel_id), first_ts=ts,
                       authors=authors_in(text), permalink=source)


def cited_slack_source(*, doc_id: str, title: str, source: str, text: str) -> SlackSource | None:
    """A cited passage as a Slack source, or None: its permalink must name the ``slack://`` path
    that its document ID was made from (see the module's docstring)."""
    try:
        parts = urlsplit(source)
    except ValueError:
        return None
    match = _PERMALINK.fullmatch(parts.path) if parts.scheme in ("http", "https") else None
    if match is None:
        return None
    channel_id, ts = match.group(1), f"{match.group(2)}.{match.group(3)}"
    if slack_doc_id(channel_id, ts) != doc_id:
        return None
    return slack_source(path=f"{SLACK_SCHEME}{channel_id}/{ts}", title=title, source=source, text=text)


def with_names(text: str, names) -> str:
    """Message text with its authors' IDs (line starts and ``@U…``) replaced by their names.

    >>> with_names("U0ANA (2026-03-04 10:15 UTC): ask @U0BEN", {"U0ANA": "Ana", "U0BEN": "Ben"}.get)
    'Ana (2026-03-04 10:15 UTC): ask @Ben'
    """
    def author(m: re.Match) -> str:
        return f"{names(m.group(1)) or m.group(1)} ({m.group(2)}): "

    text = _AUTHOR_LINE.sub(author, text)
    return _MENTION.sub(lambda m: "@" + (names(m.group(1)) or m.group(1)), text)


def author_names(source: SlackSource, names) -> str:
    """The authors as a short list of names (plain text, not yet escaped).

    >>> s = SlackSource("C0ENG", "eng", "1772619300.000100", ("U1", "U2", "U3", "U4", "U5"), "")
    >>> author_names(s, str.lower)
    'u1, u2, u3 and 2 more'
    """
    shown = [names(a) or a for a in source.authors[:MAX_AUTHORS_SHOWN]]
    more = len(source.authors) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def listed_slack_source(info: DocumentInfo, store: VectorStore | None) -> SlackSource | None:
    """An indexed document as a Slack source (its authors read from its chunks), or None where
    its path is not ``slack://``. Without a store the authors are unknown (empty)."""
    if not is_slack_path(info.path):
        return None
    text = "\n\n".join(c.text for c in store.chunks_of(info.doc_id)) if store is not None else ""
    return slack_source(path=info.path, title=info.title, source=info.source, text=text)
