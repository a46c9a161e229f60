"""The extractive generator, lorebot's default: it quotes the passages' most relevant sentences,
each with its ``[n]`` citation, and says plainly that it is quoting. It needs no generation server
and can never state anything the documents do not say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bot.generation.base import Draft, GenerationRequest
from training.chat_format import disarm_citations
from knowledge.chunking import TABLE_RULE
from knowledge.embedding import Embedder

QUOTED_LABEL = "Quoted from the documents:"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_EMPHASIS = re.compile(r"\*\*|__|`")


@dataclass(frozen=True)
class Quotable:
    """A sentence, list item or table row as shown to the reader, and the text it is scored by.

    Scoring text carries the nearest heading (or a table's header), so "Lumenfold matches 100
    percent…" under "401(k) plan" is recognised as an answer about the 401(k).
    """

    shown: str
    scored: str


def quotable_units(text: str) -> list[Quotable]:
    r"""The passage split into quotable units, headings used as context rather than quoted.

    >>> [q.shown for q in quotable_units("## Leave\n- Ten days a year. Unused days expire.")]
    ['Ten days a year.', 'Unused days expire.']
    >>> quotable_units("| Tenure | Days |\n|---|---|\n| < 3 years | 18 |")[0].shown
    'Tenure: < 3 years; Days: 18'
    >>> quotable_units("| 25 minutes | Page the VP |")[0].shown
    '25 minutes; Page the VP'
    >>> [q.shown for q in quotable_units("## Paging\nPages escalate after 10 minutes\nDental coverage: 80 percent")]
    ['Pages escalate after 10 minutes', 'Dental coverage: 80 percent']
    """
    units: list[Quotable] = []
    context, header = "", None
    lines = [_EMPHASIS.sub("", line).strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if TABLE_RULE.match(line):
            continue
        if _is_table_row(line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
                header = cells  # a header row is the one a Markdown rule line follows
                continue
            named = zip(header, cells) if header and len(header) == len(cells) else (("", c) for c in cells)
            shown = "; ".join(f"{h}: {c}" if h else c for h, c in named if c)
            units.append(Quotable(shown, f"{context}: {shown}" if context else shown))
            continue
        header = None
        if line.startswith("#"):
            context = line.lstrip("#").strip()
            continue
        item = _LIST_MARKER.sub("", line)
        for sentence in _SENTENCE_END.split(item):
            if len(sentence.split()) >= 3:
                units.append(Quotable(sentence.strip(), f"{context}: {sentence.strip()}" if context else sentence.strip()))
        if _may_be_heading(line):
            # PDFs lose heading markup, so a short line that does not end like a sentence may be
            # one: it becomes the context of what follows, and stays quotable in case it is not.
            context = line
    return units


def _is_table_row(line: str) -> bool:
    return line.startswith("|") or line.count(" | ") >= 1


def _may_be_heading(line: str) -> bool:
    return not _LIST_MARKER.match(line) and len(line.split()) <= 8 and not line.rstrip().endswith((".", "!", "?", ":", ";", ","))


@dataclass
class ExtractiveGenerator:
    """Quotes the sentences closest in meaning to the question from the best passages."""

    embedder: Embedder
    max_sentences: int = 3
    passages_considered: int = 3
    # A sentence is quoted only if it is nearly as relevant as the best one: no padding with noise.
    relative_floor: float = 0.8
    name: str = "extractive"

    def generate(self, request: GenerationRequest, *, on_text: Callable[[str], None] | None = None) -> Draft:
        """Quotes, not streamed: the finished answer is shown at once (``on_text`` is not called)."""
        question, passages, question_vector = request.question, request.passages, request.question_vector
        candidates = [
            (n, order, unit)
            for n, passage in enumerate(passages[: self.passages_considered], start=1)
            for order, unit in enumerate(quotable_units(passage.text))
        ]
        if not candidates:
            return Draft(text="", generator=self.name)
        if question_vector is None:  # retrieval already embedded it on the usual path
            question_vector = self.embedder.encode([question])[0]
        scores = self.embedder.encode([unit.scored for _, _, unit in candidates]) @ question_vector
        best = float(np.max(scores))
        threshold = best * self.relative_floor if best > 0 else best
        chosen = [candidates[i] for i in np.argsort(-scores)[: self.max_sentences] if scores[i] >= threshold]
        chosen.sort(key=lambda item: (item[0], item[1]))  # passage rank, then reading order
        # The answer is read for [n] afterwards (bot.answering), so a quote's own "[2]" would become
        # a citation: quotes show it as "(2)", and the only markers are the ones written here.
        quoted = [(n, disarm_citations(unit.shown)) for n, _, unit in chosen]
        lines = [f"> {shown} [{n}]" for n, shown in quoted]
        quotes: dict[int, list[str]] = {}
        for n, shown in quoted:
            quotes.setdefault(n, []).append(shown)
        return Draft(text=QUOTED_LABEL + "\n" + "\n".join(lines), generator=self.name, quotes=quotes)
