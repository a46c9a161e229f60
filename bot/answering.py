"""Answering a question for an audience: retrieve, generate, check citations. Knows nothing of Slack."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.generation import GenerationRequest, Generator, Turn
from training.chat_format import CITATION_MARKER
from knowledge.access import Audience
from knowledge.retrieval import Retriever
from knowledge.types import Passage

NOT_FOUND = "I couldn't find anything in the documents visible to this channel that answers this."
# Generators disarm [n] in the document text they quote or are shown (chat_format.disarm_citations), so
# every marker left in an answer is the generator's own.
_CITATION = CITATION_MARKER
SNIPPET_CHARS = 280


@dataclass(frozen=True)
class Citation:
    n: int
    title: str
    source: str
    snippet: str
    score: float
    doc_id: str
    chunk_id: str
    scope: list[str]


@dataclass(frozen=True)
class Answer:
    """What a user sees: the text, whether the documents answered it, and the numbered sources."""

    question: str
    text: str
    found: bool
    citations: tuple[Citation, ...]
    generator: str
    adapter: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Every passage the generator was given, in its [n] order before renumbering: the training
    # pipeline learns from the whole context (cited and not), so it is kept with the answer.
    passages: tuple[Passage, ...] = ()
    # A model's answer that cites none of the passages it was given: they are shown as consulted.
    consulted: tuple[Citation, ...] = ()
    # One line about how the answer was written (e.g. quoted because the model was unavailable).
    note: str | None = None
    # The best passage's cosine similarity, found or not (None when the audience may see nothing).
    top_similarity: float | None = None

    def already_quotes(self, citation: Citation) -> bool:
        """True when the answer text itself shows the citation's snippet (extractive answers do)."""
        # A long snippet is cut at a word and ends in "…": what is left of it must be in the text.
        return all(part.removesuffix("…") in self.text for part in citation.snippet.split(" … "))

    def as_json(self) -> dict:
        """The ``lorebot ask --json`` shape (a public interface: extend, never rename)."""
        return {
            "answer": self.text,
            "found": self.found,
            "citations": [
                {"n": c.n, "title": c.title, "source": c.source, "snippet": c.snippet, "score": round(c.score, 4),
                 "doc_id": c.doc_id, "scope": c.scope}
                for c in self.citations
            ],
            "consulted": [{"title": c.title, "source": c.source, "doc_id": c.doc_id} for c in self.consulted],
            "generator": self.generator,
            "adapter": self.adapter,
            "note": self.note,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@dataclass
class AnswerDeps:
    retriever: Retriever
    generator: Generator


def answer_question(
    question: str, audience: Audience, deps: AnswerDeps, *, on_text: Callable[[str], None] | None = None,
    history: tuple[Turn, ...] = (),
) -> Answer:
    """Retrieve what this audience may see, write an answer from it, and keep only real citations.

    ``history`` is the thread so far (for a model that reads it). With ``on_text`` and a generator
    that streams, each piece of the answer is passed to it as it is written (to show it in Slack);
    the returned answer is the finished, checked one.
    """
    started = time.perf_counter()
    retrieval = deps.retriever.retrieve(question, audience)
    timings = dict(retrieval.timings_ms)
    if not retrieval.found:
        timings["total"] = (time.perf_counter() - started) * 1000
        return Answer(question=question, text=NOT_FOUND, found=False, citations=(), generator=deps.generator.name,
                      timings_ms=timings, top_similarity=retrieval.top_similarity)
    passages = list(retrieval.passages)
    generated = time.perf_counter()
    request = GenerationRequest(question=question, passages=passages, history=history,
                                conversation_id=audience.conversation_id, question_vector=retrieval.question_vector,
                                searched_as=retrieval.searched_as, unfamiliar_words=retrieval.unfamiliar_words)
    draft = deps.generator.generate(request, on_text=on_text)
    timings["generate"] = (time.perf_counter() - generated) * 1000
    timings.update({k: v for k, v in draft.timings_ms.items() if k != "generate"})
    shown = passages if draft.passages_used is None else passages[: draft.passages_used]
    text, citations = renumber_citations(draft.text, shown, quotes=draft.quotes)
    timings["total"] = (time.perf_counter() - started) * 1000
    common = dict(question=question, generator=draft.generator, adapter=draft.adapter, timings_ms=timings,
                  passages=tuple(shown), note=draft.note, top_similarity=retrieval.top_similarity)
    if not text.strip():
        return Answer(text=NOT_FOUND, found=False, citations=(), **common)
    consulted = () if citations else tuple(_citation(n, p, _snippet(None, p)) for n, p in enumerate(shown, start=1))
    return Answer(text=text, found=True, citations=tuple(citations), consulted=consulted, **common)


def renumber_citations(
    text: str, passages: list[Passage], *, quotes: dict[int, list[str]] | None = None
) -> tuple[str, list[Citation]]:
    """Keep only ``[n]`` that point at a real passage, renumbered 1.. in order of first use.

    >>> p = [Passage("d1", "d1:0", "A", "a.md", (), "Alpha.", None, 1.0, 0.9),
    ...      Passage("d2", "d2:0", "B", "b.md", (), "Beta.", None, 0.5, 0.8)]
    >>> text, cites = renumber_citations("Beta [2]. Alpha [1]. Ghost [7].", p)
    >>> text, [(c.n, c.title) for c in cites]
    ('Beta [1]. Alpha [2]. Ghost.', [(1, 'B'), (2, 'A')])
    """
    order: dict[int, int] = {}

    def replace(match: re.Match) -> str:
        original = int(match.group(1))
        if not 1 <= original <= len(passages):
            return ""
        order.setdefault(original, len(order) + 1)
        return f"[{order[original]}]"

    cleaned = re.sub(r"\s+([.,;:!?])", r"\1", _CITATION.sub(replace, text))
    citations = [
        _citation(new, passages[original - 1], _snippet((quotes or {}).get(original), passages[original - 1]))
        for original, new in order.items()
    ]
    return cleaned, citations


def _snippet(quoted: list[str] | None, passage: Passage) -> str:
    """What the answer quoted from the passage, or else the passage's opening, within a short limit."""
    return shorten(" … ".join(quoted) if quoted else passage.text, SNIPPET_CHARS)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word to at most ``limit`` characters, "…" marking a cut.

    >>> shorten("Ten  days\\na year, rolled over", 14)
    'Ten days a…'
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _citation(n: int, passage: Passage, snippet: str) -> Citation:
    return Citation(n=n, title=passage.title, source=passage.source, snippet=snippet, score=passage.score,
                    doc_id=passage.doc_id, chunk_id=passage.chunk_id,
                    scope=passage.scope.as_list() if passage.scope else [])
