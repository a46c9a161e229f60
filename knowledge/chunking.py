"""Split a document into chunks small enough to embed, that still make sense alone.

The input is the lightweight Markdown every loader produces. Headings split the document into
sections (a chunk never spans two); inside a section, paragraphs are packed greedily up to the
token budget, and consecutive chunks overlap by a few whole sentences or words. The budget
covers what is really embedded, :attr:`Chunk.embedding_text`: the context line (title and
heading path) plus the text.

>>> from knowledge.access import Scope
>>> doc = Document(doc_id="d1", title="Guide", source="", path="", content_hash="",
...                scope=Scope.public(), text="# Guide\\n\\nIntro.\\n\\n## Setup\\n\\nRun it.")
>>> [(c.chunk_id, c.heading_path, c.text) for c in chunk_document(doc)]
[('d1:0', (), 'Intro.'), ('d1:1', ('Setup',), 'Run it.')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from knowledge.types import Chunk, Document, StoredChunk

# Letter runs, digit runs, and single punctuation marks: BERT's basic tokenizer splits the same way.
_TOKEN = re.compile(r"[^\W\d_]+|\d+|_|[^\w\s]")
# Scripts beyond Latin are mostly split into single characters by all-MiniLM-L6-v2's vocabulary.
_LATIN_END = 0x24F
_HEADING = re.compile(r"^ {0,3}(?P<marks>#{1,6})[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
# Code fences, shared with the Markdown loader (it writes what this module reads).
FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}(?=[^`]*$)|~{3,})")
_SENTENCE_END = re.compile(r"(?<=[.!?…])(?P<close>[\"'”’)\]]*)\s+")
_SENTENCE_START = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n\s*")
_SPACE = re.compile(r"\s+")
# The line under a Markdown table's header row (``|---|---|``); shared with whoever reads tables.
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")


@dataclass(frozen=True)
class ChunkingOptions:
    """How big chunks are, in estimated tokens, and how much consecutive chunks share.

    128 is the sequence length all-MiniLM-L6-v2 was trained on: longer inputs are read but
    summarised less faithfully. On BEIR SciFact, chunks of 128 (against 200) raised dense
    nDCG@10 from 0.674 to 0.701 and BM25 from 0.678 to 0.683; a passage still gets the chunks
    around its best one (``knowledge.retrieval.collapse_by_document``).
    """

    max_tokens: int = 128
    overlap_tokens: int = 20

    def __post_init__(self) -> None:
        if self.max_tokens < 32:
            raise ValueError(f"max_tokens must be at least 32, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be at least 0 and less than half of max_tokens "
                f"({self.max_tokens // 2}), got {self.overlap_tokens}"
            )


def estimate_tokens(text: str) -> int:
    """A cheap over-estimate of how many WordPiece tokens all-MiniLM-L6-v2 makes of ``text``.

    Words of up to four letters count one token, longer words one more per four letters
    beyond that, digit runs one per two digits, punctuation one each, and letters of
    non-Latin scripts one each. Measured against the model's own tokenizer on a thousand
    paragraphs of READMEs and docs, it over-counts the median paragraph by about a fifth and
    under-counts only code-like text full of rare identifiers, by at most a quarter. The model
    adds ``[CLS]``/``[SEP]`` and truncates at 256; a budget of up to 200 leaves that margin.

    >>> estimate_tokens("Ask the bot, in a thread.")
    9
    >>> estimate_tokens("internationalization")  # 20 letters: 1 + 4 more
    5
    >>> estimate_tokens("version 2024.10")
    6
    """
    return sum(_piece_tokens(match.group()) for match in _TOKEN.finditer(text))


def _piece_tokens(piece: str) -> int:
    if piece[0].isdigit():
        return (len(piece) + 1) // 2
    if piece.isascii():  # the common case, kept fast: ingest estimates every word several times
        return 1 + (len(piece) - 1) // 4
    wide = sum(1 for ch in piece if ord(ch) > _LATIN_END)
    narrow = len(piece) - wide
    return wide + (1 + (narrow - 1) // 4 if narrow else 0)


def chunk_document(doc: Document, options: ChunkingOptions = ChunkingOptions()) -> list[Chunk]:
    """Split a document into chunks in document order, positions ``0..n-1``.

    Every chunk's ``embedding_text`` fits ``options.max_tokens`` (by :func:`estimate_tokens`).
    Headings become the chunk's ``heading_path``; a top-level heading equal to the title is left
    out of it. Sections with a heading but no text produce no chunk.
    """
    pieces: list[tuple[str, tuple[str, ...], str]] = []
    for section in _sections(doc.text):
        title, path = _fit_context(doc.title, _heading_path(section.headings, doc.title), options.max_tokens)
        budget = options.max_tokens - estimate_tokens(_context(title, path))
        atoms = [atom for block in section.blocks for atom in _block_atoms(block, budget)]
        texts = (text.strip() for text in _pack(atoms, budget, options.overlap_tokens))
        pieces.extend((title, path, text) for text in texts if text)
    return [
        Chunk(
            chunk_id=f"{doc.doc_id}:{position}",
            doc_id=doc.doc_id,
            position=position,
            title=title,
            heading_path=path,
            text=text,
        )
        for position, (title, path, text) in enumerate(pieces)
    ]


# --- Parsing the lightweight Markdown into sections of blocks ---------------------------------


@dataclass(frozen=True)
class _Block:
    text: str
    code: bool = False


@dataclass
class _Section:
    headings: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)


def _sections(text: str) -> Iterator[_Section]:
    """Sections in document order; a fenced code block is one block, and never holds headings."""
    stack: list[tuple[int, str]] = []
    section = _Section(headings=())
    paragraph: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        fence = FENCE_OPEN.match(line)
        heading = _HEADING.match(line)
        if fence or heading or not line.strip():
            _end_paragraph(paragraph, section)
        if fence:
            code = _read_fence(line, fence.group("fence"), lines)
            if code:
                section.blocks.append(_Block(code, code=True))
        elif heading and heading.group("text"):
            yield section
            level = len(heading.group("marks"))
            stack = [(lvl, txt) for lvl, txt in stack if lvl < level] + [(level, heading.group("text"))]
            section = _Section(headings=tuple(txt for _, txt in stack))
        elif line.strip():
            paragraph.append(line)
    _end_paragraph(paragraph, section)
    yield section


def _end_paragraph(paragraph: list[str], section: _Section) -> None:
    if paragraph:
        section.blocks.append(_Block("\n".join(line.rstrip() for line in paragraph)))
        paragraph.clear()


def _read_fence(opening: str, fence: str, lines: Iterator[str]) -> str:
    """The whole fenced block, consuming lines up to its closing fence (or the end of the text).

    An empty block gives ``""``: it says nothing worth a chunk.
    """
    closing = closing_fence(fence)
    code = [opening]
    has_body = False
    for line in lines:
        code.append(line)
        if closing.match(line):
            break
        has_body = has_body or bool(line.strip())
    return "\n".join(code) if has_body else ""


def closing_fence(fence: str) -> re.Pattern[str]:
    """A closing fence: the same character, at least as many times, and nothing else."""
    return re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")


def _heading_path(headings: tuple[str, ...], title: str) -> tuple[str, ...]:
    """The headings above a section, less a top-level heading that merely repeats the title."""
    if headings and headings[0].strip() == title.strip():
        return headings[1:]
    return headings


def _context(title: str, path: tuple[str, ...]) -> str:
    return Chunk(chunk_id="", doc_id="", position=0, title=title, heading_path=path, text="").context


def _fit_context(title: str, path: tuple[str, ...], max_tokens: int) -> tuple[str, tuple[str, ...]]:
    """Keep the context line to half the budget at most: outer headings go first, then words.

    Only absurdly long titles or headings are touched; the body must keep room to say something.
    """
    limit = max_tokens // 2
    title = _clip(title, limit)
    while len(path) > 1 and estimate_tokens(_context(title, path)) > limit:
        path = path[1:]
    if path and estimate_tokens(_context(title, path)) > limit:
        room = limit - estimate_tokens(title) - 1  # the " › " separator is one token
        clipped = _clip(path[0], room) if room > 0 else ""
        path = (clipped,) if clipped else ()
    return title, path


def _clip(text: str, limit: int) -> str:
    if estimate_tokens(text) <= limit:
        return text
    kept: list[str] = []
    for word in text.split():
        if estimate_tokens(" ".join([*kept, word])) > limit:
            break
        kept.append(word)
    # Any string of n characters without spaces estimates at most n tokens.
    return " ".join(kept) if kept else text[:limit]


# --- Cutting blocks into atoms that fit the budget --------------------------------------------


@dataclass(frozen=True)
class _Atom:
    text: str
    sep: str  # what joins it to the atom before it in the same chunk
    tokens: int
    # Code and table pieces: kept whole, and never cut up to make the next chunk's overlap.
    verbatim: bool = False


def _block_atoms(block: _Block, budget: int) -> list[_Atom]:
    """A block as one atom if it fits, else as lines, sentences, words — in that order."""
    tokens = estimate_tokens(block.text)
    if tokens <= budget:
        atoms = [_Atom(block.text, "\n\n", tokens, block.code)]
    elif block.code:
        atoms = _code_atoms(block.text, budget)
    elif is_table(block.text):
        atoms = _table_atoms(block.text, budget)
    else:
        atoms = _prose_atoms(block.text, budget)
    return [replace(atoms[0], sep="\n\n"), *atoms[1:]] if atoms else []


def is_table(text: str) -> bool:
    """True when the text is a Markdown table: a row, its rule line, and more rows."""
    lines = text.strip().split("\n")
    return len(lines) > 2 and lines[0].lstrip().startswith("|") and bool(TABLE_RULE.match(lines[1]))


def _table_atoms(text: str, budget: int) -> list[_Atom]:
    """A long table as several tables, each repeating the header row: a chunk holding the last
    rows still says what their columns mean."""
    lines = text.split("\n")
    header = "\n".join(lines[:2])
    room = budget - estimate_tokens(header)
    if room < budget // 2:  # a header too wide to repeat: fall back to plain lines
        return _prose_atoms(text, budget)
    atoms: list[_Atom] = []
    rows: list[str] = []
    for row in lines[2:]:
        if rows and estimate_tokens("\n".join([*rows, row])) > room:
            atoms.append(_table_atom(header, rows))
            rows = []
        rows.append(row)
    if rows:
        atoms.append(_table_atom(header, rows))
    return [a for atom in atoms for a in ([atom] if atom.tokens <= budget else _prose_atoms(atom.text, budget))]


def _table_atom(header: str, rows: list[str]) -> _Atom:
    text = header + "\n" + "\n".join(rows)
    return _Atom(text, "\n\n", estimate_tokens(text), verbatim=True)


def _prose_atoms(text: str, budget: int) -> list[_Atom]:
    atoms: list[_Atom] = []
    for line in text.split("\n"):
        line_atoms = _line_atoms(line, budget)
        if line_atoms:
            atoms.extend([replace(line_atoms[0], sep="\n"), *line_atoms[1:]])
    return atoms


def _line_atoms(line: str, budget: int) -> list[_Atom]:
    tokens = estimate_tokens(line)
    if tokens <= budget:
        return [_Atom(line, " ", tokens)] if line.strip() else []
    atoms: list[_Atom] = []
    for sentence in _sentences(line):
        tokens = estimate_tokens(sentence)
        atoms.extend([_Atom(sentence, " ", tokens)] if tokens <= budget else _word_atoms(sentence, budget))
    return atoms


def _sentences(line: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        sentences.append(line[start : match.end("close")])
        start = match.end()
    sentences.append(line[start:])
    return [s for s in sentences if s.strip()]


def _word_atoms(sentence: str, budget: int) -> list[_Atom]:
    atoms: list[_Atom] = []
    for word in sentence.split():
        tokens = estimate_tokens(word)
        if tokens <= budget:
            atoms.append(_Atom(word, " ", tokens))
            continue
        # A "word" longer than the whole budget (a hash, a data URI) is cut: the model would
        # truncate it anyway. Any n characters without spaces estimate at most n tokens.
        for start in range(0, len(word), budget):
            piece = word[start : start + budget]
            atoms.append(_Atom(piece, " " if start == 0 else "", estimate_tokens(piece)))
    return atoms


def _code_atoms(code: str, budget: int) -> list[_Atom]:
    """An oversized code block, cut by lines into pieces that each keep their fences."""
    lines = code.split("\n")
    opening = lines[0]
    closing = lines[-1] if len(lines) > 1 and _is_closing(opening, lines[-1]) else ""
    body = "\n".join(lines[1 : len(lines) - 1 if closing else len(lines)])
    inner = budget - estimate_tokens(opening) - estimate_tokens(closing)
    if inner < 8:  # an absurd info string: cut the block as plain lines instead
        return _prose_atoms(code, budget)
    pieces = _pack(_prose_atoms(body, inner), inner, overlap=0)
    wrapped = ["\n".join(part for part in (opening, piece, closing) if part) for piece in pieces]
    return [_Atom(text, "\n", estimate_tokens(text), verbatim=True) for text in wrapped]


def _is_closing(opening: str, line: str) -> bool:
    fence = FENCE_OPEN.match(opening)
    return bool(fence and closing_fence(fence.group("fence")).match(line))


# --- Packing atoms into chunks ----------------------------------------------------------------


def _pack(atoms: list[_Atom], budget: int, overlap: int) -> list[str]:
    """Greedy packing; each new chunk starts with the tail of the previous one.

    Atoms are joined at whitespace (or, for a cut giant word, glued), so a chunk's estimate is
    at most the sum of its atoms' estimates — which is what the budget is checked against.
    """
    chunks: list[str] = []
    current: list[_Atom] = []
    used = 0
    for atom in atoms:
        if current and used + atom.tokens > budget:
            chunks.append(_join(current))
            current = _overlap(current, min(overlap, budget - atom.tokens))
            used = sum(a.tokens for a in current)
        current.append(atom)
        used += atom.tokens
    if current:
        chunks.append(_join(current))
    return chunks


def _join(atoms: list[_Atom]) -> str:
    return atoms[0].text + "".join(atom.sep + atom.text for atom in atoms[1:])


def _overlap(previous: list[_Atom], limit: int) -> list[_Atom]:
    """The end of the previous chunk, as whole sentences (or whole words), to open the next one.

    Only prose after the last code or table atom is used: half a code block or a table row would be noise.
    """
    prose: list[_Atom] = []
    for atom in reversed(previous):
        if atom.verbatim:
            break
        prose.insert(0, atom)
    if not prose or limit <= 0:
        return []
    tail = _tail(_join(prose), limit)
    return [_Atom(tail, "", estimate_tokens(tail))] if tail else []


def _tail(text: str, limit: int) -> str:
    """The longest proper suffix of ``text`` within ``limit`` tokens that starts a sentence,
    or failing that a word."""
    for boundary in (_SENTENCE_START, _SPACE):
        starts = [m.end() for m in boundary.finditer(text) if 0 < m.end() < len(text)]
        best, used, end = "", 0, len(text)
        for start in reversed(starts):
            # Boundaries fall on whitespace, so the suffix's estimate grows piece by piece.
            used += estimate_tokens(text[start:end])
            end = start
            if used > limit:
                break
            best = text[start:]
        if best:
            return best
    return ""


def strip_overlap(previous: str, following: str) -> str:
    """``following`` without the words it repeats from the end of ``previous`` (chunk overlap).

    >>> strip_overlap("one two three four", "three four five six")
    'five six'
    """
    before = previous.split()
    words = list(re.finditer(r"\S+", following))
    after = [w.group() for w in words]
    for size in range(min(len(before), len(after)), 0, -1):
        if before[-size:] == after[:size]:
            return following[words[size - 1].end():].strip()  # keeps the line breaks that follow
    return following


def document_text(chunks: list[Chunk] | list[StoredChunk]) -> str:
    """A document's text rebuilt from its chunks: the title, each heading where its section starts,
    and the text once (the overlap between consecutive chunks removed). What document-level BM25 reads.

    >>> from knowledge.types import Chunk
    >>> parts = [Chunk("d:0", "d", 0, "Guide", (), "Intro one two."), Chunk("d:1", "d", 1, "Guide", ("Setup",), "Run it."),
    ...          Chunk("d:2", "d", 2, "Guide", ("Setup",), "Run it. Then stop.")]
    >>> document_text(parts)
    'Guide\\nIntro one two.\\nSetup\\nRun it.\\nThen stop.'
    """
    ordered = sorted(chunks, key=lambda c: c.position)
    lines = [ordered[0].title] if ordered and ordered[0].title else []
    previous = None
    for chunk in ordered:
        same_section = previous is not None and previous.heading_path == chunk.heading_path
        if not same_section:
            shared = 0 if previous is None else _common_prefix(previous.heading_path, chunk.heading_path)
            lines.extend(h for h in chunk.heading_path[shared:] if h != chunk.title)
        follows = same_section and chunk.position == previous.position + 1
        text = strip_overlap(previous.text, chunk.text) if follows else chunk.text
        if text:
            lines.append(text)
        previous = chunk
    return "\n".join(lines)


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    return shared
