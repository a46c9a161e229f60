"""Plain text files, and the helpers every loader shares: decoding, tidying, titles.

>>> tidy("One  \\r\\n\\r\\n\\r\\n\\r\\nTwo\\t \\n")
'One\\n\\nTwo'
>>> title_from_path(Path("docs/getting_started-guide.md"))
'Getting started guide'
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
from pathlib import Path

from knowledge.errors import LoadError
from knowledge.types import LoadedText

log = logging.getLogger(__name__)

# Control characters a text can carry by accident (not tab or newline); they only confuse the tokenizer.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\u200b\ufeff]")
_BLANK_RUN = re.compile(r"\n{3,}")
# A line the chunker would read as a heading or a code fence.
_MARKDOWN_SIGNIFICANT = re.compile(r"^ {0,3}(#{1,6}(?:[ \t]|$)|`{3}|~{3})")
# A legacy-encoded file is accepted only if nearly all of it decodes to printable text.
_MAX_CONTROL_RATIO = 0.01


def load_text(path: Path, data: bytes) -> LoadedText:
    """A plain text file: its text as is (tidied), titled after the file name.

    Markdown-like headings in a ``.txt`` file (``# Setup``) are kept: such files are usually
    Markdown by another name, and the chunker profits from their structure.
    """
    return LoadedText(title=title_from_path(path), text=tidy(decode_text(path, data)))


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file's bytes, or raise :class:`LoadError` if they are not text.

    Order: UTF-16 when it starts with a UTF-16 byte order mark (Windows "Unicode" files, the
    only text that legitimately holds NUL bytes); otherwise NUL bytes mean binary. Then UTF-8,
    via ``utf-8-sig``, which reads plain UTF-8 unchanged and drops a leading byte order mark.
    A file that is UTF-8 but for a few bad bytes (a bad copy, a truncated write) stays UTF-8:
    each bad sequence becomes U+FFFD, and a warning names the file and the count. Only a file
    that is clearly not UTF-8 is decoded as a legacy single-byte encoding: Windows-1252 first (it is what "ANSI" editors wrote,
    and it maps 0x80-0x9F to curly quotes and dashes where Latin-1 has invisible controls),
    then Latin-1 — accepted only when the result is almost free of control characters, because
    Latin-1 decodes any bytes at all and would otherwise turn binary files into garbage text.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise LoadError(str(path), "corrupt text: invalid UTF-16") from e
    if b"\x00" in data:
        raise LoadError(str(path), "binary file, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        mostly_utf8 = _mostly_utf8(data)
        if mostly_utf8 is not None:
            text, bad = mostly_utf8
            log.warning("%s: %d invalid UTF-8 byte sequence%s replaced with U+FFFD", path, bad, "" if bad == 1 else "s")
            return text
        legacy = _decode_legacy(data)
        if legacy is None:
            raise LoadError(str(path), "not valid UTF-8 text, nor readable as Windows-1252/Latin-1") from e
        return legacy


def _mostly_utf8(data: bytes) -> tuple[str, int] | None:
    r"""``(text, number of bad sequences)`` when ``data`` is UTF-8 with a few bad bytes, else None.

    The evidence is the valid multi-byte sequences: a Windows-1252 or Latin-1 file writes each
    accented letter as one high byte followed by ASCII, which is never valid UTF-8, so it holds
    almost none; a damaged UTF-8 file holds at least as many of them as bad sequences. A file
    with none (ASCII and a lone high byte) is as likely Windows-1252, and is read as that.

    >>> text, bad = _mostly_utf8("naïve café".encode() + b"\x93")
    >>> text == "naïve café\ufffd", bad
    (True, 1)
    >>> _mostly_utf8("naïve café".encode("cp1252")) is None
    True
    """
    text = data.decode("utf-8-sig", errors="replace")
    # A U+FFFD the file itself spells (EF BF BD) is text, not a bad byte.
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    good = sum(1 for ch in text if ord(ch) > 0x7F) - bad
    return (text, bad) if 0 < bad <= good else None


def _decode_legacy(data: bytes) -> str | None:
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _control_ratio(text) <= _MAX_CONTROL_RATIO:
            return text
    return None


def _control_ratio(text: str) -> float:
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    return controls / max(1, len(text))


def tidy(text: str) -> str:
    """Normalize whitespace: Unix newlines, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", text).strip("\n")


def escape_line(line: str) -> str:
    r"""Keep a line of prose from reading as a Markdown heading or code fence.

    >>> escape_line("# not a heading")
    '\\# not a heading'
    >>> escape_line("C# is fine")
    'C# is fine'
    """
    return "\\" + line.lstrip(" ") if _MARKDOWN_SIGNIFICANT.match(line) else line


def markdown_table(rows: list[list[str]], *, header: bool) -> list[str]:
    """Rows of cells as Markdown table lines (a ``|`` in a cell becomes ``/``); with ``header``, the
    first row names the columns and a rule line follows it. The shape every loader gives tables,
    and the one the chunker and the answer units read.

    >>> markdown_table([["Plan", "Limit"], ["A|B", "10"]], header=True)
    ['| Plan | Limit |', '|---|---|', '| A/B | 10 |']
    """
    lines = ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return [lines[0], "|" + "---|" * len(rows[0]), *lines[1:]] if header and rows else lines


def title_from_path(path: Path) -> str:
    """A readable title made from a file name: ``release_notes-2024.md`` → ``Release notes 2024``."""
    words = re.sub(r"[-_\s]+", " ", path.stem).strip()
    if not words:
        return path.name
    return words[0].upper() + words[1:]
