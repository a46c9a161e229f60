"""The extractive generator, lorebot's default: it quotes the passage units that answer the question
(the one that answers best first), each with its ``[n]`` citation, and says plainly that it is
quoting. It needs no generation server and can never state anything the documents do not say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from bot.generation.answer_units import (
    answer_type,
    figure_evidence,
    figures,
    holds,
    keyword_evidence,
    type_evidence,
)
from bot.generation.base import Draft, GenerationRequest
from knowledge.chunking import TABLE_RULE
from knowledge.embedding import Embedder
from knowledge.question_terms import question_parts, terms
from knowledge.types import Passage
from training.chat_format import disarm_citations


class UnitVectorSource(Protocol):
    def vectors(self, texts: list[str]) -> np.ndarray: ...


QUOTED_LABEL = "Quoted from the documents:"
EXCERPT_BREAK = "…"  # the line between excerpts of one document in a passage
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_EMPHASIS = re.compile(r"\*\*|__|`")
_WORDS = re.compile(r"[^\W_]+")
# The kinds of answer written in few ways (figures with their units, phone numbers, addresses): a
# passage holding none does not answer, whatever its subject.
_CLOSED_KINDS = frozenset({"amount", "duration", "frequency", "contact"})


@dataclass(frozen=True)
class Quotable:
    """A sentence, list item or table row as shown to the reader, and the text it is scored by.

    Scoring text carries the nearest heading (or a table's header), so "Lumenfold matches 100
    percent…" under "401(k) plan" is recognised as an answer about the 401(k).
    """

    shown: str
    scored: str
    # A short line that does not end like a sentence: possibly a heading whose markup was lost.
    heading_like: bool = False
    table_row: bool = False
    # Which line of the passage it comes from: sentences of one paragraph or list item share it.
    line: int = 0


def quotable_units(text: str, context: str = "") -> list[Quotable]:
    r"""The passage split into quotable units, headings used as context rather than quoted.

    ``context`` is the heading the passage starts under: a chunk cut from the middle of a section
    has lost its heading line, not its subject.

    >>> [q.shown for q in quotable_units("## Leave\n- Ten days a year. Unused days expire.")]
    ['Ten days a year.', 'Unused days expire.']
    >>> quotable_units("| Tenure | Days |\n|---|---|\n| < 3 years | 18 |")[0].shown
    'Tenure: < 3 years; Days: 18'
    >>> quotable_units("| 25 minutes | Page the VP |")[0].shown
    '25 minutes; Page the VP'
    >>> [q.shown for q in quotable_units("## Paging\nPages escalate after 10 minutes\nDental coverage: 80 percent")]
    ['Pages escalate after 10 minutes', 'Dental coverage: 80 percent']
    >>> quotable_units("Be online from 10:00 to 14:00.", context="Core hours")[0].scored
    'Core hours: Be online from 10:00 to 14:00.'
    """
    units: list[Quotable] = []
    header = None
    lines = [_EMPHASIS.sub("", line).strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if TABLE_RULE.match(line):
            continue
        if line == EXCERPT_BREAK:  # what follows is from elsewhere in the document
            context, header = "", None
            continue
        if _is_table_row(line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
                header = cells  # a header row is the one a Markdown rule line follows
                continue
            named = zip(header, cells) if header and len(header) == len(cells) else (("", c) for c in cells)
            shown = "; ".join(f"{h}: {c}" if h else c for h, c in named if c)
            units.append(Quotable(shown, f"{context}: {shown}" if context else shown, table_row=True, line=i))
            continue
        header = None
        if line.startswith("#"):
            context = line.lstrip("#").strip()
            continue
        item = _LIST_MARKER.sub("", line)
        heading_like = _may_be_heading(line)
        for sentence in _SENTENCE_END.split(item):
            if len(sentence.split()) >= 3:
                units.append(Quotable(sentence.strip(), f"{context}: {sentence.strip()}" if context else sentence.strip(),
                                      heading_like, line=i))
        if heading_like:
            # PDFs lose heading markup, so a short line that does not end like a sentence may be
            # one: it becomes the context of what follows, and stays quotable in case it is not.
            context = line
    return units


def lost_heading(heading_path: tuple[str, ...], text: str) -> str:
    """The heading a passage (or chunk) starts under when its text does not show it (a chunk cut
    mid-section).

    A heading that appears in the text is where the text reaches it, not where it starts.
    """
    if not heading_path:
        return ""
    heading = heading_path[-1]
    shown = {_EMPHASIS.sub("", line).strip().lstrip("#").strip() for line in text.splitlines()}
    # Excerpts joined by "…" come from several places; which one the heading belongs to is unknown.
    return "" if heading in shown or EXCERPT_BREAK in shown else heading


def passage_units(passage: Passage) -> list[Quotable]:
    """A passage's quotable units, chunk by chunk where it says which chunks it joins: each chunk's
    units read under that chunk's own heading, exactly as they were read (and embedded) at ingest."""
    if not passage.pieces:
        return quotable_units(passage.text, lost_heading(passage.heading_path, passage.text))
    units: list[Quotable] = []
    first_line = 0  # lines are numbered through the passage, not restarted per chunk
    for piece in passage.pieces:
        units.extend(replace(unit, line=first_line + unit.line) for unit in piece_units(piece.heading_path, piece.text))
        first_line += len(piece.text.splitlines())
    return units


def piece_units(heading_path: tuple[str, ...], text: str) -> list[Quotable]:
    """The quotable units of one chunk's text (see :func:`passage_units`)."""
    return quotable_units(text, lost_heading(heading_path, text))


def _is_table_row(line: str) -> bool:
    return line.startswith("|") or line.count(" | ") >= 1


def _may_be_heading(line: str) -> bool:
    return not _LIST_MARKER.match(line) and len(line.split()) <= 8 and not line.rstrip().endswith((".", "!", "?", ":", ";", ","))


def quoted_draft(picked: list[tuple[int, str]], generator: str) -> Draft:
    """An answer quoting ``(passage number, unit text)`` pairs in order, each with its ``[n]``.

    The answer is read for [n] afterwards (bot.answering), so a quote's own "[2]" would become a
    citation: quotes show it as "(2)", and the only markers are the ones written here.

    >>> print(quoted_draft([(1, "Ten days a year, see [2]."), (2, "Sick days: 8.")], "x").text)
    Quoted from the documents:
    > Ten days a year, see (2). [1]
    > Sick days: 8. [2]
    """
    quoted = [(n, disarm_citations(shown)) for n, shown in picked]
    quotes: dict[int, list[str]] = {}
    for n, shown in quoted:
        quotes.setdefault(n, []).append(shown)
    lines = [f"> {shown} [{n}]" for n, shown in quoted]
    return Draft(text="\n".join([QUOTED_LABEL, *lines]), generator=generator, quotes=quotes)


@dataclass
class ExtractiveGenerator:
    """Leads with the unit that answers the question, then adds the few that add something.

    Each unit is scored by its embedding similarity to the question, plus keyword evidence (the
    question's rarer words in the unit or its heading) and the answer type (a unit holding the
    amount, date, duration or person the question asks for is raised, one without it lowered).
    The best unit leads; others follow only if they score close to it, are not near duplicates of
    what is already quoted, and fit the budgets (``max_units`` units, ``max_chars`` characters
    beyond the lead, which is always quoted whole).
    """

    embedder: Embedder
    max_units: int = 3
    max_chars: int = 600
    passages_considered: int = 3
    # Weights on top of cosine similarity (which spans ~0.1-0.7 here): a full keyword match is
    # worth about a third of the similarity range, holding the asked type about a sixth.
    keyword_weight: float = 0.3
    type_weight: float = 0.12
    # A unit stating the number the question names ("day 90"): as strong as a full keyword match.
    figure_weight: float = 0.3
    # A bare heading-like line ("Retirement savings 401(k) plan") names a topic, it rarely answers.
    heading_penalty: float = 0.1
    # A table row holding the asked type: tables are where documents state amounts and dates.
    table_weight: float = 0.1
    # A supporting unit must score within this of the best: no padding with noise.
    support_margin: float = 0.25
    # ... and within this of it when it comes from another document than the lead.
    other_document_margin: float = 0.15
    # Lead candidates this close count as tied (see _best).
    tie_margin: float = 0.02
    # Units this similar to one already quoted say the same thing (overlapping chunks repeat text).
    duplicate_similarity: float = 0.9
    # A question naming something the visible documents never mention is answered only by a unit at
    # least this similar to it. Set on the bundled handbook's questions: units that answered such a
    # question reached 0.52 and more, the best units for unanswerable ones (a dress code, the wifi
    # password) 0.36 to 0.43.
    unmentioned_min_similarity: float = 0.47
    name: str = "extractive"
    # Where units' vectors are remembered (bot.generation.unit_vectors.UnitVectors); None embeds
    # every unit at question time.
    unit_vectors: UnitVectorSource | None = None

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        """Quotes, not streamed: the finished answer is shown at once (``on_text`` is not called)."""
        question, passages, question_vector = request.question, request.passages, request.question_vector
        candidates = [
            (n, order, unit)
            for n, passage in enumerate(passages[: self.passages_considered], start=1)
            for order, unit in enumerate(passage_units(passage))
        ]
        if not candidates:
            return Draft(text="", generator=self.name)
        if question_vector is None:  # retrieval already embedded it on the usual path
            question_vector = self.embedder.encode([question])[0]
        units = [unit for _, _, unit in candidates]
        vectors = self._unit_vectors([unit.scored for unit in units])
        parts = question_parts(question)
        # A message asking two things is scored per question asked (a few short texts: the fast
        # question encoder's kind of batch).
        asked = parts if len(parts) > 1 else []
        part_vectors = list(self.embedder.encode(asked)) if asked else [question_vector]
        part_similarities = [vectors @ v for v in part_vectors]
        if self._answers_nothing(request, parts, candidates, part_similarities):
            return Draft(text="", generator=self.name)  # "not found", said plainly
        picked = self._select(question, parts, units, vectors, part_similarities,
                              vectors @ question_vector, [n for n, _, _ in candidates])
        return quoted_draft([(candidates[i][0], candidates[i][2].shown) for i in picked], self.name)

    def _answers_nothing(self, request: GenerationRequest, parts: list[str],
                         candidates: list[tuple[int, int, Quotable]], part_similarities: list[np.ndarray]) -> bool:
        """True when no unit of the passages answers, though they are on the question's subject.

        Retrieval judges a passage by its subject; a quote must also hold what was asked:

        - a question asking for an amount, a duration, how often, or a contact is answered only by a
          unit holding one in a paragraph, list item or table row that names something the question
          names ("within 10 working days" in a paragraph about reviewing disclosures does not say
          how long investigation files are kept). Not "who" or "when": people and times are written
          in too many ways ("issued by facilities", "every spring", "before your first day") to
          tell that none is there;
        - a question naming something no document its channel may see ever mentions ("wifi", "dress"
          code) is answered only by a unit that comes close to it. A message asking several things
          is answered when one of them is ("whos the cfo? need to cc them on a big deal").
        """
        asked = request.searched_as or request.question
        named = terms(request.question) | terms(asked)
        kind = answer_type(asked)
        if kind in _CLOSED_KINDS:
            line_terms: dict[tuple[int, int], set[str]] = {}
            for n, _, unit in candidates:
                line_terms.setdefault((n, unit.line), set()).update(terms(unit.scored))
            if not any(holds(unit.shown, kind) and line_terms[(n, unit.line)] & named for n, _, unit in candidates):
                return True
        unmentioned = {word for word in request.unfamiliar_words if terms(word)}  # filler is not a subject
        return all(unmentioned & set(_WORDS.findall(part.lower())) and float(np.max(similarities)) < self.unmentioned_min_similarity
                   for part, similarities in zip(parts, part_similarities))

    def _unit_vectors(self, texts: list[str]) -> np.ndarray:
        """Remembered where the units were embedded at ingest (see ``unit_vectors``), else embedded now."""
        if self.unit_vectors is not None:
            return self.unit_vectors.vectors(texts)
        return self.embedder.encode(texts)

    def scores(self, question: str, units: list[Quotable], similarities: np.ndarray) -> np.ndarray:
        """Each unit's score for a question: similarity, plus keyword and answer-type evidence.

        A table row holding the asked type gains a little more (a table is where a document
        states its amounts and dates), a bare heading-like line loses a little.
        """
        keywords = np.asarray(keyword_evidence(question, [u.scored for u in units]), dtype=np.float32)
        numbers = np.asarray(figure_evidence(question, [u.shown for u in units]), dtype=np.float32)
        # The type is judged on what is shown: a heading such as "2025 cycle dates" must not make
        # every row under it look like a date.
        types = np.asarray(type_evidence(answer_type(question), [u.shown for u in units]), dtype=np.float32)
        rows = np.asarray([u.table_row for u in units], dtype=np.float32) * (types > 0)
        headings = np.asarray([u.heading_like for u in units], dtype=np.float32)
        return (np.asarray(similarities, dtype=np.float32) + self.keyword_weight * keywords
                + self.figure_weight * numbers
                + self.type_weight * types + self.table_weight * rows - self.heading_penalty * headings)

    def _select(self, question: str, parts: list[str], units: list[Quotable], vectors: np.ndarray,
                part_similarities: list[np.ndarray], similarities: np.ndarray, passages: list[int]) -> list[int]:
        """Indexes of the units to quote: the lead first, then its support in reading order.

        ``passages`` gives each unit's passage: support from another document than the lead's
        must score closer to the lead (it is more often beside the point)."""
        by_part = [self.scores(part, units, sims) for part, sims in zip(parts, part_similarities)]
        overall = by_part[0] if len(parts) == 1 else self.scores(question, units, similarities)
        picked: list[int] = []
        used_chars = 0

        def add(i: int) -> None:
            nonlocal used_chars
            if len(picked) >= self.max_units or i in picked:
                return
            if self._repeats(i, picked, units, vectors):
                return
            if picked and used_chars + len(units[i].shown) > self.max_chars:
                return
            picked.append(i)
            used_chars += len(units[i].shown) if len(picked) > 1 else 0

        # Each question asked gets its best unit, the first question's leading; then units about as
        # good as the best for the whole message, while the budgets last.
        for scores in by_part:
            add(self._best(scores))
        best = float(np.max(overall))
        for i in np.argsort(-overall, kind="stable"):
            if overall[i] < best - self.support_margin:
                break
            if passages[i] != passages[picked[0]] and overall[i] < best - self.other_document_margin:
                continue
            add(int(i))
        return picked[:1] + sorted(picked[1:])

    def _repeats(self, i: int, picked: list[int], units: list[Quotable], vectors: np.ndarray) -> bool:
        """True when unit ``i`` says what is already quoted: the same text, or nearly the same
        meaning with no figure of its own (rows of one table are alike but for their figures)."""
        if not picked:
            return False
        if any(units[i].shown == units[j].shown for j in picked):
            return True
        quoted_figures = set().union(*(figures(units[j].shown) for j in picked))
        new_figures = figures(units[i].shown) - quoted_figures
        return not new_figures and any(float(vectors[i] @ vectors[j]) >= self.duplicate_similarity for j in picked)

    def _best(self, scores: np.ndarray) -> int:
        # Scores this close do not tell units apart; documents put the usual case first (the first
        # row of a table, the first sentence of a section), so the earliest of them is taken.
        return int(np.flatnonzero(scores >= float(np.max(scores)) - self.tie_margin)[0])
