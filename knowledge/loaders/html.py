"""HTML pages, rendered to lightweight Markdown with BeautifulSoup's ``html.parser``.

Page chrome (navigation, scripts, forms, site headers and footers) is dropped; when the page
has a ``<main>`` (or a single ``<article>``) only that is read.

>>> from pathlib import Path
>>> page = b"<title>Guide</title><nav>Home</nav><h2>Setup</h2><ul><li>Install</li><li>Run</li></ul>"
>>> print(load_html(Path("guide.html"), page).text)
## Setup
<BLANKLINE>
- Install
- Run
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from knowledge.loaders.text import decode_text, escape_line, markdown_table, tidy, title_from_path
from knowledge.types import LoadedText

# Form controls are noise, not the <form> itself: some sites wrap the whole page in one.
_NOISE = ["head", "title", "script", "style", "noscript", "template", "iframe", "svg", "nav", "aside",
          "button", "input", "select", "textarea"]
_CHROME = ["header", "footer"]
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_LISTS = ["ul", "ol"]
_BLOCKS = [
    *_HEADINGS, *_LISTS, *_NOISE, *_CHROME, "address", "article", "blockquote", "body", "caption",
    "center", "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "form", "hr",
    "html", "li", "main", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr",
]
_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)
_SPACES = re.compile(r"\s+")
# Stands for a <br> while inline text is collected, so it survives collapsing source whitespace;
# decoded text never holds a NUL (see decode_text).
_BREAK = "\x00"


def load_html(path: Path, data: bytes) -> LoadedText:
    """An HTML page. Title: ``<title>``, else the first ``<h1>``, else the file name."""
    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    title = _text_of(soup.find(_is_page_title))
    _drop_noise(soup)
    title = title or _text_of(soup.find("h1")) or title_from_path(path)
    blocks: list[str] = []
    _render_container(_content_root(soup), blocks)
    return LoadedText(title=title, text=tidy("\n\n".join(blocks)))


def _is_page_title(tag: Tag) -> bool:
    return tag.name == "title" and tag.find_parent("svg") is None


def _text_of(tag: Tag | None) -> str:
    return _SPACES.sub(" ", tag.get_text(" ")).strip() if tag else ""


def _drop_noise(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(_NOISE):
        if not tag.decomposed:
            tag.decompose()
    # An article's own <header> holds its headline and byline; only the page's are chrome.
    for tag in soup.find_all(_CHROME):
        if not tag.decomposed and not tag.find_parent(["article", "main"]):
            tag.decompose()


def _content_root(soup: BeautifulSoup) -> Tag:
    main = soup.find("main")
    if main:
        return main
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    return soup.body or soup


def _render_container(element: Tag, blocks: list[str]) -> None:
    """Render a container's children: runs of inline content become paragraphs."""
    inline: list[str] = []
    for child in element.children:
        if isinstance(child, Tag) and _is_block(child):
            _flush_paragraph(inline, blocks)
            _render_block(child, blocks)
        else:
            _collect_inline(child, inline, skip=())
    _flush_paragraph(inline, blocks)


def _is_block(tag: Tag) -> bool:
    return tag.name in _BLOCKS or tag.find(_BLOCKS) is not None


def _flush_paragraph(inline: list[str], blocks: list[str]) -> None:
    text = _inline_text(inline)
    inline.clear()
    if text:
        blocks.append("\n".join(escape_line(line) for line in text.split("\n")))


def _render_block(tag: Tag, blocks: list[str]) -> None:
    if tag.name in _HEADINGS:
        text = _one_line(tag)
        if text:
            blocks.append("#" * _HEADINGS[tag.name] + " " + text)
    elif tag.name == "pre":
        if tag.get_text().strip():
            blocks.append(_fenced(tag.get_text()))
    elif tag.name in _LISTS:
        blocks.append("\n".join(_list_lines(tag, depth=0)))
    elif tag.name == "table":
        blocks.append("\n".join(_table_rows(tag)))
    elif tag.name == "blockquote":
        inner: list[str] = []
        _render_container(tag, inner)
        if inner:
            blocks.append("\n".join(f"> {line}".rstrip() for line in "\n\n".join(inner).split("\n")))
    elif tag.name != "hr":
        _render_container(tag, blocks)


def _fenced(code: str) -> str:
    """A code fence longer than any run of backticks in the code, so the code cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{code.strip(chr(10))}\n{fence}"


def _list_lines(list_tag: Tag, depth: int) -> list[str]:
    # html.parser does not close an unclosed <li>, so items are found by their nearest list.
    lines: list[str] = []
    for item in list_tag.find_all("li"):
        if item.find_parent(_LISTS) is not list_tag:
            continue
        text = _one_line(item, skip=("li", *_LISTS))
        if text:
            lines.append("  " * depth + "- " + text)
        for sub in item.find_all(_LISTS):
            if sub.find_parent("li") is item:
                lines.extend(_list_lines(sub, depth + 1))
    return lines


def _table_rows(table: Tag) -> list[str]:
    """A table as Markdown rows; a header row (``<th>`` cells) is followed by a rule line, so
    readers downstream know which row names the columns."""
    rows: list[str] = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = row.find_all(["td", "th"], recursive=False)
        texts = [_one_line(cell) for cell in cells]
        if not any(texts):
            continue
        # A header row (all <th>) is the first, and is followed by the rule line.
        rows.extend(markdown_table([texts], header=not rows and bool(cells) and all(c.name == "th" for c in cells)))
    return rows


def _one_line(tag: Tag, skip: tuple[str, ...] = ()) -> str:
    """A heading's, list item's or cell's text, where a <br> is only a space."""
    return _inline_text(_inline_parts(tag, skip)).replace("\n", " ")


def _inline_parts(tag: Tag, skip: tuple[str, ...] = ()) -> list[str]:
    parts: list[str] = []
    for child in tag.children:
        _collect_inline(child, parts, skip)
    return parts


def _collect_inline(node: object, parts: list[str], skip: tuple[str, ...]) -> None:
    if isinstance(node, NavigableString):
        if not isinstance(node, _NOT_TEXT):
            parts.append(str(node))
        return
    if not isinstance(node, Tag) or node.name in skip:
        return
    if node.name == "br":
        parts.append(_BREAK)
        return
    # Block boundaries inside inline context (a <p> in an <li>) still separate words.
    boundary = " " if node.name in _BLOCKS else ""
    parts.append(boundary)
    for child in node.children:
        _collect_inline(child, parts, skip)
    parts.append(boundary)


def _inline_text(parts: list[str]) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parts).split(_BREAK))
    return "\n".join(line for line in lines if line)
