"""Tables in a PDF's text layer, kept as tables.

pypdf's text extraction writes a table row as one line, its cells run together ("Annual deductible
500 / 1,000 USD 2,000 / 4,000 USD"): which figure belongs to which column is lost. Each piece of
text pypdf extracts comes with where it starts on the page, though, and a table is where the pieces
of consecutive lines start at the same few horizontal positions, its columns. Those lines are
written as a Markdown table (the shape the HTML loader gives tables, and the one the chunker and
the answer units read), everything else exactly as pypdf extracts it.

Conservative by design: a block becomes a table only if every column (a position where pieces of
its rows start) is used by at least half of its rows; anything else (prose, bullet lists whose
marker is a piece of its own, producers that place every word on its own) stays text. A cell's text
wrapped onto a second line is joined to its cell. A block stops growing as soon as it has more
columns than that rule allows, so a page of scattered pieces costs about as much as its lines, and
a failure of this heuristic costs the page its tables, never its text.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from knowledge.loaders.text import markdown_table

log = logging.getLogger(__name__)

# Pieces starting this close (in PDF points) start in the same column.
COLUMN_TOLERANCE = 2.0
_LIST_MARKER = re.compile(r"^(?:[-*+•◦▪▫●○‣∙·■□➢►–—]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])$")


@dataclass
class _Line:
    text: str = ""
    # (x, cell text) of each piece that starts on this line; None when a piece's position is unknown.
    pieces: list[tuple[float, str]] | None = field(default_factory=list)
    # How high on the page its first piece sits (PDF points, up is larger); None: not known.
    y: float | None = None


def page_text_with_tables(extract: Callable[..., str]) -> str:
    """The page's text as ``extract`` (a pypdf page's ``extract_text``) gives it, with table rows
    written as a Markdown table.

    Falls back to the plain text whenever the pieces do not add up to it.
    """
    pieces: list[tuple[str, float, float]] = []

    def visit(text, cm, tm, font_dict, font_size) -> None:
        pieces.append((text, tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5]))

    plain = extract(visitor_text=visit) or ""
    if "".join(text for text, _, _ in pieces) != plain:
        return plain
    try:
        return tables_as_markdown(_lines(pieces))
    except Exception as e:  # finding tables is a help: the page's text is kept whatever it meets
        log.warning("tables on a PDF page could not be read, kept as plain text: %s", e)
        return plain


def _lines(pieces: list[tuple[str, float, float]]) -> list[_Line]:
    lines = [_Line()]
    for text, x, y in pieces:
        first, *rest = text.split("\n")
        line = lines[-1]
        line.text += first
        if first.strip() and line.pieces is not None:
            if not line.pieces:
                line.y = y
            line.pieces.append((x, first.strip()))
        for part in rest:
            # Text after a line break inside one piece: where it starts is not known.
            lines.append(_Line(part, [] if not part.strip() else None))
    return lines


def tables_as_markdown(lines: list[_Line]) -> str:
    """The lines' text, each block that is a table written as a Markdown table between blank lines."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        end, table = _table_at(lines, i)
        if table is None:
            out.append(lines[i].text)
            i += 1
            continue
        out.extend(["", *table, ""])
        i = end
    return "\n".join(out)


def _table_at(lines: list[_Line], start: int) -> tuple[int, list[str] | None]:
    """The end of the table that starts at ``lines[start]`` and its Markdown, or (start, None)."""
    if not _is_row(lines[start]) or _LIST_MARKER.match(lines[start].pieces[0][1]):
        return start, None  # a table's first row names its columns; a list item's marker does not
    block: list[_Line] = []
    starts: list[float] = []
    widest = 0
    row_gap = math.inf  # the least distance down from one row to the next
    for line in lines[start:]:
        if _is_row(line):
            widest = max(widest, len(line.pieces))
            # Every column is used by half the rows or more, so a table has at most twice as many
            # columns as its widest row has pieces: once this block has more, longer ones never qualify.
            if len(_columns([*starts, *(x for x, _ in line.pieces)])) > 2 * widest:
                break
            starts.extend(x for x, _ in line.pieces)
            if block and _is_row(block[-1]):
                row_gap = min(row_gap, _gap(block[-1], line))
        elif not (_is_continuation(line, starts) and _gap(block[-1], line) <= row_gap + COLUMN_TOLERANCE):
            # A wrapped cell's next line sits no farther down than the next row would (fpdf spaces
            # them alike); a note under the table that happens to start at a column, farther.
            break
        block.append(line)
    # The longest run of these lines that is a table (a list or prose may follow it directly).
    for length in range(len(block), 1, -1):
        rows = _cells(block[:length])
        if rows:
            return start + length, markdown_table(rows, header=True)
    return start, None


def _gap(above: _Line, below: _Line) -> float:
    """How far ``below`` sits under ``above`` (0 when either position is not known: then only the
    columns tell, as before positions were read)."""
    if above.y is None or below.y is None or math.isnan(above.y - below.y):
        return 0.0
    return above.y - below.y


def _is_row(line: _Line) -> bool:
    return line.pieces is not None and len(line.pieces) >= 2


def _is_continuation(line: _Line, starts: list[float]) -> bool:
    """One piece, starting at a column of the block (``starts``: where its rows' pieces start) other
    than its first: the rest of a wrapped cell."""
    if not starts or line.pieces is None or len(line.pieces) != 1:
        return False
    x = line.pieces[0][0]
    return x > min(starts) + COLUMN_TOLERANCE and any(abs(x - s) <= COLUMN_TOLERANCE for s in starts)


def _cells(block: list[_Line]) -> list[list[str]] | None:
    """The block's rows as cells, one per column, or None when the block is not a table."""
    rows = [line for line in block if _is_row(line)]
    if len(rows) < 2:
        return None
    columns = _columns([x for row in rows for x, _ in row.pieces])
    used = [0] * len(columns)
    table: list[list[str]] = []
    for line in block:
        cells = [""] * len(columns)
        for x, text in line.pieces:
            # Columns are where the rows' pieces start, so each piece starts at one; a second
            # piece in a cell is the cell's text wrapped onto another line.
            column = _column_of(x, columns)
            cells[column] = f"{cells[column]} {text}".strip()
        if _is_row(line):
            for column, cell in enumerate(cells):
                used[column] += bool(cell)
            table.append(cells)
        else:  # a wrapped cell's next line
            table[-1] = [f"{a} {b}".strip() for a, b in zip(table[-1], cells)]
    if len(columns) < 2 or min(used) < max(2, math.ceil(len(rows) / 2)):
        return None
    if any(all(not row[c] or _LIST_MARKER.match(row[c]) for row in table) for c in range(len(columns))):
        return None  # a list whose markers are pieces of their own
    return table


def _columns(starts: list[float]) -> list[float]:
    columns: list[float] = []
    for x in sorted(starts):
        if not columns or x - columns[-1] > COLUMN_TOLERANCE:
            columns.append(x)
    return columns


def _column_of(x: float, columns: list[float]) -> int:
    """The column a piece starting at ``x`` is in: the last one starting at or before it (within
    the tolerance). A continuation line's piece may start a little off every column."""
    return max(0, bisect.bisect_right(columns, x + COLUMN_TOLERANCE) - 1)
