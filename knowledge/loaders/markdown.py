"""Markdown files: kept as Markdown, with the few normalizations the chunker relies on.

Setext headings become ATX headings, HTML comments and tags go (a reader of the rendered page
never sees them), entities are decoded, and fenced code is kept verbatim between its fences,
so a ``# comment`` inside code is never mistaken for a heading. An unclosed fence is closed.

>>> from pathlib import Path
>>> loaded = load_markdown(Path("notes.md"), b"Setup\\n=====\\n\\nRun it.<!-- TODO -->\\n")
>>> loaded.title, loaded.text
('Setup', '# Setup\\n\\nRun it.')
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from knowledge.chunking import FENCE_OPEN, closing_fence
from knowledge.loaders.text import decode_text, tidy, title_from_path
from knowledge.types import LoadedText

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<body>.*?)^(?:---|\.\.\.)[ \t]*$\n?", re.DOTALL | re.MULTILINE)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w-]*[ \t]*:")
_TITLE_KEY = re.compile(r"^title[ \t]*:[ \t]*(?P<value>.*?)[ \t]*$", re.MULTILINE)
_ATX = re.compile(r"^ {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?P<line>=+|-+)[ \t]*$")
# Lines that cannot be (part of) a setext heading's text: list items, quotes, tables, indented code.
_NOT_PARAGRAPH = re.compile(r"^(?: {4}|\t| {0,3}(?:[-*+>|]|\d+[.)])(?:\s|$))")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_CODE_SPAN_OR_TAG = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks))|(?P<br><br\s*/?>)|</?(?P<tag>[A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?/?>"
)
# Only these are HTML to drop: ``List<String>`` or ``x<y and z>w`` in prose are text, not tags.
_HTML_ELEMENTS = frozenset(
    "a abbr b bdi bdo big blockquote caption center cite code col colgroup dd del details dfn div dl dt "
    "em figcaption figure font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p picture pre q s samp "
    "section small source span strike strong sub summary sup table tbody td tfoot th thead time tr tt u "
    "ul var video audio wbr".split()
)


@dataclass(frozen=True)
class _Segment:
    code: bool
    lines: list[str]


def load_markdown(path: Path, data: bytes) -> LoadedText:
    """A Markdown file. Title: front matter ``title:``, else the first heading, else the file name."""
    text = tidy(decode_text(path, data))
    front_title, text = _split_front_matter(text)
    segments = [_normalize(s) for s in _segments(text.split("\n"))]
    title = front_title or _first_heading(segments) or title_from_path(path)
    return LoadedText(title=title, text=tidy("\n".join(line for s in segments for line in s.lines)))


def _split_front_matter(text: str) -> tuple[str | None, str]:
    match = _FRONT_MATTER.match(text)
    if not match or not _looks_like_yaml(match.group("body")):
        return None, text
    title = _TITLE_KEY.search(match.group("body"))
    return (_yaml_scalar(title.group("value")) if title else None), text[match.end() :]


def _looks_like_yaml(body: str) -> bool:
    first = next((line for line in body.split("\n") if line.strip()), "")
    return not first or bool(_YAML_KEY.match(first))


def _yaml_scalar(value: str) -> str | None:
    """The plain or quoted YAML scalars a title is written as; block scalars are not worth a parser."""
    value = re.sub(r"\s+#.*$", "", value) if value[:1] not in "\"'" else value
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].replace("''", "'") if value[0] == "'" else value[1:-1].replace('\\"', '"')
    value = value.strip()
    return value if value and value not in ("|", ">") else None


def _segments(lines: list[str]) -> list[_Segment]:
    """Split lines into prose and fenced code, closing a fence left open at the end."""
    segments: list[_Segment] = []
    prose: list[str] = []
    index = 0
    while index < len(lines):
        fence = FENCE_OPEN.match(lines[index])
        if not fence:
            prose.append(lines[index])
            index += 1
            continue
        segments.append(_Segment(False, prose))
        prose = []
        code, index = _take_fence(lines, index, fence.group("fence"))
        segments.append(_Segment(True, code))
    segments.append(_Segment(False, prose))
    return segments


def _take_fence(lines: list[str], start: int, fence: str) -> tuple[list[str], int]:
    closing = closing_fence(fence)
    for index in range(start + 1, len(lines)):
        if closing.match(lines[index]):
            return lines[start : index + 1], index + 1
    return [*lines[start:], fence], len(lines)


def _normalize(segment: _Segment) -> _Segment:
    if segment.code:
        return segment
    text = _COMMENT.sub("", "\n".join(segment.lines))
    lines = [_strip_tags(line) for line in text.split("\n")]
    return _Segment(False, [_atx(line) for line in _setext_to_atx(lines)])


def _strip_tags(line: str) -> str:
    """Drop inline HTML tags and decode entities, leaving code spans exactly as written."""
    parts: list[str] = []
    position = 0
    for match in _CODE_SPAN_OR_TAG.finditer(line):
        tag = match.group("tag")
        if tag and tag.lower() not in _HTML_ELEMENTS:
            continue  # not HTML: stays as text
        parts.append(html.unescape(line[position : match.start()]))
        parts.append(match.group("code") or (" " if match.group("br") else ""))
        position = match.end()
    parts.append(html.unescape(line[position:]))
    return "".join(parts)


def _setext_to_atx(lines: list[str]) -> list[str]:
    out: list[str] = []
    paragraph_start: int | None = None
    for line in lines:
        underline = _SETEXT_UNDERLINE.match(line)
        if underline and paragraph_start is not None:
            text = " ".join(part.strip() for part in out[paragraph_start:])
            level = 1 if underline.group("line")[0] == "=" else 2
            out[paragraph_start:] = ["#" * level + " " + text]
            paragraph_start = None
            continue
        if not line.strip() or _ATX.match(line) or _NOT_PARAGRAPH.match(line):
            paragraph_start = None
        elif paragraph_start is None:
            paragraph_start = len(out)
        out.append(line)
    return out


def _atx(line: str) -> str:
    """``  ## Title ##`` → ``## Title``; an empty heading (a lone ``#``) is dropped."""
    match = _ATX.match(line)
    if not match:
        return line
    text = (match.group("text") or "").strip()
    return f"{match.group('marks')} {text}" if text else ""


def _first_heading(segments: list[_Segment]) -> str | None:
    for segment in segments:
        if segment.code:
            continue
        for line in segment.lines:
            match = _ATX.match(line)
            if match and match.group("text"):
                return match.group("text").strip()
    return None
