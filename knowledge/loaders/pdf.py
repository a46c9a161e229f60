"""PDF files, read with pypdf: the text layer page by page, reflowed into paragraphs.

PDF text comes as visual lines. Words hyphenated at a line break are rejoined, and a line that
does not end a sentence is joined to the next, so paragraphs read as prose. Tables are kept as
Markdown tables, a row to a line (:mod:`knowledge.loaders.pdf_tables`), and are not reflowed. PDFs
carry no reliable heading structure, so none is invented. A scanned PDF has no text layer; it yields no
text, and the caller reports it.

>>> print(reflow("The infor-\\nmation is\\nhere.\\n\\n• First\\n• Second"))
The information is here.
<BLANKLINE>
- First
- Second
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from pypdf import PasswordType, PdfReader

from knowledge.chunking import is_table
from knowledge.errors import LoadError
from knowledge.loaders.pdf_tables import page_text_with_tables
from knowledge.loaders.text import escape_line, tidy, title_from_path
from knowledge.types import LoadedText

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_HYPHENATED = re.compile(r"(\w)-\n[ \t]*([a-z])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_BULLET = re.compile(r"^[•◦▪▫●○‣∙·■□➢►]\s*")
# A line ending like this ends a sentence (or introduces a list): keep the line break after it.
_LINE_END = re.compile(r"[.!?:…][\"'”’)\]]*$")
_LIST_ITEM = re.compile(r"^(?:- |\d{1,3}[.)] |[a-z][.)] )")


def load_pdf(path: Path, data: bytes) -> LoadedText:
    """A PDF's text layer. Title: the document's ``/Title`` metadata, else the file name."""
    reader = _open(path, data)
    pages = [reflow(_page_text(path, reader, number)) for number in range(_page_count(path, reader))]
    text = tidy("\n\n".join(page for page in pages if page))
    return LoadedText(title=_metadata_title(reader) or title_from_path(path), text=text)


def _open(path: Path, data: bytes) -> PdfReader:
    # pypdf raises many exception types on malformed input (its own, ValueError, KeyError, ...):
    # whatever it raises, the file is what is broken.
    try:
        reader = PdfReader(io.BytesIO(data))
        # An empty user password opens PDFs that only restrict printing or copying.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise LoadError(str(path), "encrypted PDF: it needs a password to open")
    except LoadError:
        raise
    except Exception as e:
        raise LoadError(str(path), _corrupt_reason(e)) from e
    return reader


def _corrupt_reason(error: Exception) -> str:
    if type(error).__name__ == "DependencyError":
        return "encrypted PDF: its encryption (AES) needs the 'cryptography' package to open"
    return "corrupt PDF: pypdf could not parse it"


def _page_count(path: Path, reader: PdfReader) -> int:
    try:
        return len(reader.pages)
    except Exception as e:
        raise LoadError(str(path), _corrupt_reason(e)) from e


def _page_text(path: Path, reader: PdfReader, number: int) -> str:
    try:
        return page_text_with_tables(reader.pages[number].extract_text)
    except Exception as e:
        raise LoadError(str(path), f"corrupt PDF: page {number + 1} could not be read") from e


def _metadata_title(reader: PdfReader) -> str:
    # A broken info dictionary costs the title only, never the document.
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        return ""
    return re.sub(r"\s+", " ", str(title)).strip() if title else ""


def reflow(text: str) -> str:
    """Turn a page's visual lines into paragraphs: rejoin hyphenated words and wrapped lines."""
    text = _HYPHENATED.sub(r"\1\2", text.translate(_LIGATURES).replace("\r", "\n"))
    paragraphs = (_join_lines(part) for part in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _join_lines(paragraph: str) -> str:
    if is_table(paragraph):  # written by pdf_tables: rows stay rows
        return paragraph
    lines: list[str] = []
    for raw in paragraph.split("\n"):
        line = _BULLET.sub("- ", raw.strip())
        if not line:
            continue
        if lines and not _LINE_END.search(lines[-1]) and not _LIST_ITEM.match(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(escape_line(line) for line in lines)
