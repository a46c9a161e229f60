"""A question and its audience in, ranked passages with their sources out.

The store ranks chunks (hybrid: BM25 + dense, fused) among those the audience may see; here they are
collapsed to one passage per document, and the relevance floor decides whether anything was found.
"""

from __future__ import annotations

import time
from itertools import pairwise
from dataclasses import dataclass, field

import numpy as np

from knowledge.access import Audience, filter_for
from knowledge.chunking import strip_overlap
from knowledge.embedding import Embedder
from knowledge.errors import QuestionError
from knowledge.stores.base import SearchMode, SearchRequest, VectorStore
from knowledge.types import Passage, PassagePiece, ScoredChunk, StoredChunk


@dataclass(frozen=True)
class RetrievalOptions:
    """How retrieval ranks and when it says "found"."""

    k: int = 5
    mode: SearchMode = "hybrid"
    candidates: int = 50
    dense_weight: float = 0.5
    min_similarity: float = 0.39


@dataclass(frozen=True)
class Retrieval:
    """The passages for one question, and whether any of them is good enough to answer from."""

    question: str
    passages: tuple[Passage, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The question's embedding, for a generator that compares text with it (None if never made).
    question_vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    # The best cosine similarity among all passages the audience may see, kept or not (None: none
    # at all): how close the question came to the floor, for monitoring.
    top_similarity: float | None = None

    @property
    def found(self) -> bool:
        return bool(self.passages)


@dataclass
class Retriever:
    store: VectorStore
    embedder: Embedder
    options: RetrievalOptions = field(default_factory=RetrievalOptions)

    def search(
        self, question: str, audience: Audience, *, k: int | None = None, mode: SearchMode | None = None
    ) -> tuple[list[Passage], dict[str, float]]:
        """The top ``k`` passages (one per document) the audience may see, best first, no floor."""
        passages, timings, _ = self._search(question, audience, k=k, mode=mode)
        return passages, timings

    def _search(
        self, question: str, audience: Audience, *, k: int | None, mode: SearchMode | None
    ) -> tuple[list[Passage], dict[str, float], np.ndarray | None]:
        access = filter_for(audience)  # refuses an empty audience before any work is done
        if not question or not any(ch.isalnum() for ch in question):
            raise QuestionError("the question is empty: ask something in words")
        k = k or self.options.k
        candidates = max(self.options.candidates, k * 4)  # room to collapse chunks into documents
        timings: dict[str, float] = {}
        embedded: list[np.ndarray] = []

        def embed_question():
            began = time.perf_counter()
            embedded.append(self.embedder.encode([question])[0])
            timings["embed"] = (time.perf_counter() - began) * 1000
            return embedded[0]

        started = time.perf_counter()
        request = SearchRequest(
            text=question, vector=embed_question, k=candidates, mode=mode or self.options.mode,
            candidates=candidates, dense_weight=self.options.dense_weight,
        )
        hits = self.store.search(request, access)
        # The store may embed while it searches: "search" is the time beyond embedding.
        timings.setdefault("embed", 0.0)
        timings["search"] = (time.perf_counter() - started) * 1000 - timings["embed"]
        return collapse_by_document(hits)[:k], timings, (embedded[0] if embedded else None)

    def retrieve(self, question: str, audience: Audience, *, k: int | None = None) -> Retrieval:
        """The passages good enough to answer from: at or above the relevance floor."""
        passages, timings, vector = self._search(question, audience, k=k, mode=None)
        good = tuple(p for p in passages if p.similarity >= self.options.min_similarity)
        top = max((p.similarity for p in passages), default=None)
        return Retrieval(question=question, passages=good, timings_ms=timings, question_vector=vector,
                         top_similarity=top)


def collapse_by_document(hits: list[ScoredChunk], *, max_chunks: int = 3, companion_ratio: float = 0.5) -> list[Passage]:
    """One passage per document, ranked by its best chunk.

    A document whose several chunks match does not crowd out other documents; instead its other
    strong chunks (score at least ``companion_ratio`` of its best, up to ``max_chunks`` in all) join
    the passage in reading order, so an answer spread over two sections is not cut in half.
    """
    groups: dict[str, list[ScoredChunk]] = {}
    for hit in hits:  # hits arrive best first
        group = groups.setdefault(hit.chunk.doc_id, [])
        if len(group) < max_chunks and (not group or hit.score >= group[0].score * companion_ratio):
            group.append(hit)
    return [_passage(group) for group in groups.values()]


def _passage(group: list[ScoredChunk]) -> Passage:
    best = group[0].chunk
    ordered = sorted((h.chunk for h in group), key=lambda c: c.position)
    pieces = passage_pieces(ordered)
    text = pieces[0].text
    for previous, chunk, piece in zip(ordered, ordered[1:], pieces[1:]):
        separator = "\n" if chunk.position == previous.position + 1 else "\n…\n"
        text += separator + piece.text
    return Passage(
        doc_id=best.doc_id, chunk_id=best.chunk_id, title=best.title, source=best.source,
        heading_path=best.heading_path, text=text, scope=best.scope, score=group[0].score,
        similarity=max(h.similarity for h in group), also_matched=tuple(c.chunk_id for c in ordered if c != best),
        pieces=tuple(pieces),
    )


def passage_pieces(ordered: list[StoredChunk]) -> list[PassagePiece]:
    """Chunks of one document in reading order, as a passage shows them: each after the first
    without the words it repeats from the one before it."""
    pieces = [PassagePiece(ordered[0].heading_path, ordered[0].text)] if ordered else []
    for previous, chunk in pairwise(ordered):
        pieces.append(PassagePiece(chunk.heading_path, strip_overlap(previous.text, chunk.text)))
    return pieces
