"""A question and its audience in, ranked passages with their sources out.

The store ranks chunks (hybrid: BM25 + dense, fused) among those the audience may see; here they are
collapsed to one passage per document, and the relevance floor decides whether anything was found.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import pairwise
from dataclasses import dataclass, field, replace

import numpy as np

from knowledge.access import AccessFilter, Audience, filter_for
from knowledge.chunking import strip_overlap
from knowledge.embedding import Embedder
from knowledge.errors import QuestionError
from knowledge.query_words import QueryVocabulary, dictionary_words
from knowledge.question_terms import question_parts, terms
from knowledge.stores.base import SearchMode, SearchRequest, VectorStore
from knowledge.types import Passage, PassagePiece, ScoredChunk, StoredChunk

log = logging.getLogger(__name__)

# How often (seconds) a long-running process (the bot) brings the vocabulary up to date with the index.
VOCABULARY_REFRESH_S = 30.0
# A refresh reads the chunks of each new or edited document on its own (``chunks_of``), unless there
# are more than this many, and more than this share of the index: then one pass over the whole index
# (``export_documents``) is cheaper. (LanceDB, SciFact's 5,183 documents: ~7 ms a document on its
# own, ~1 s for all of them.)
VOCABULARY_FULL_READ_AT = 64
VOCABULARY_FULL_READ_SHARE = 1 / 32


@dataclass(frozen=True)
class RetrievalOptions:
    """How retrieval ranks and when it says "found"."""

    k: int = 5
    mode: SearchMode = "hybrid"
    candidates: int = 50
    dense_weight: float = 0.5
    min_similarity: float = 0.39
    # A passage holding every content word of the question counts from this lower similarity: the
    # embedding model reads short, shorthand questions ("when's all hands") poorly, the words do not lie.
    min_similarity_all_words: float = 0.25
    # Mend typos and shorthand in a question from the words of the documents its audience may see
    # (knowledge.query_words) before searching.
    mend_questions: bool = True


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
    # The question as searched (mended), and its words no document the audience may see uses.
    searched_as: str = ""
    unfamiliar_words: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.passages)


@dataclass(frozen=True)
class VocabularyRefresh:
    """What one refresh of the vocabulary did."""

    documents: int  # documents the index lists
    documents_read: int  # documents whose chunks were read (new or edited; all of them on a full read)
    documents_removed: int
    documents_rescoped: int  # moved under their new scope without reading them
    full_read: bool  # the whole index was read (the first build, or many documents changed)


@dataclass
class Retriever:
    store: VectorStore
    embedder: Embedder
    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    _vocabulary: QueryVocabulary | None = field(default=None, init=False, repr=False)
    _vocabulary_checked: float | None = field(default=None, init=False, repr=False)  # None: never built
    _vocabulary_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _vocabulary_build_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def search(
        self, question: str, audience: Audience, *, k: int | None = None, mode: SearchMode | None = None
    ) -> tuple[list[Passage], dict[str, float]]:
        """The top ``k`` passages (one per document) the audience may see, best first, no floor."""
        searched = self._search(question, audience, k=k, mode=mode)
        return searched.passages, searched.timings_ms

    def mend(self, question: str, audience: Audience) -> str:
        """The question with typos and shorthand mended from the words of the documents
        ``audience`` may see (see :mod:`knowledge.query_words`); unchanged when mending is off."""
        return self._mend(question, filter_for(audience))[0]

    def _mend(self, question: str, access: AccessFilter) -> tuple[str, tuple[str, ...]]:
        """The mended question, and its words no document under ``access`` uses (none known when
        mending is off: the vocabulary is not kept then)."""
        vocabulary = self._current_vocabulary() if self.options.mend_questions else None
        if vocabulary is None:
            return question, ()
        mended = vocabulary.mend(question, access.allowed)
        return mended, vocabulary.unfamiliar(mended, access.allowed)

    def refresh_vocabulary(self, *, unless_built: bool = False) -> VocabularyRefresh | None:
        """Bring the vocabulary questions are mended from up to date with the index: only documents
        added, edited, removed or rescoped since the last refresh are read or taken away (the first
        refresh reads the whole index). Questions go on meanwhile with the vocabulary as it is.
        ``unless_built``: nothing to do if it was built already (say by a warm-up at start).
        What was done, or None when nothing was looked at, or the index could not be read (questions
        are then searched as asked until a later refresh builds the vocabulary again)."""
        with self._vocabulary_build_lock:
            if unless_built and self._vocabulary_checked is not None:
                return None
            try:
                with self._vocabulary_lock:
                    vocabulary = self._vocabulary
                if vocabulary is None:  # built whole, and shown to questions once it is
                    vocabulary = QueryVocabulary(dictionary=dictionary_words(self.embedder))
                done = self._bring_up_to_date(vocabulary)
                with self._vocabulary_lock:
                    self._vocabulary = vocabulary
                return done
            except Exception as e:  # mending is a help, never a reason not to answer
                log.warning("questions are searched as asked: the index's words could not be read: %s", e)
                with self._vocabulary_lock:
                    self._vocabulary = None
                return None
            finally:
                with self._vocabulary_lock:
                    self._vocabulary_checked = time.monotonic()

    def keep_vocabulary_current(self, stopping: threading.Event, every_s: float = VOCABULARY_REFRESH_S) -> None:
        """Bring the vocabulary up to date now and then every ``every_s`` on a thread of its own,
        questions or not, until ``stopping`` is set (the bot): reading the index's words never
        holds a question up, and after a quiet hour a document narrowed meanwhile no longer lends
        its words to the next question. Nothing when mending is off."""
        if not self.options.mend_questions:
            return

        def loop() -> None:
            while True:
                self.refresh_vocabulary()  # never raises: a failure leaves questions searched as asked
                if stopping.wait(every_s):
                    return

        threading.Thread(target=loop, name="lorebot-vocabulary", daemon=True).start()

    def _bring_up_to_date(self, vocabulary: QueryVocabulary) -> VocabularyRefresh:
        listed = {d.doc_id: (d.content_hash, d.scope.labels) for d in self.store.list_documents()}
        held = vocabulary.document_keys()
        removed = rescoped = read = 0
        for doc_id in held.keys() - listed.keys():
            removed += vocabulary.remove_document(doc_id)
        to_read = []
        for doc_id, (content_hash, labels) in listed.items():
            was = held.get(doc_id)
            if was is None or was[0] != content_hash:
                to_read.append(doc_id)
            elif was[1] != labels:  # the same text under another scope: its words move
                rescoped += vocabulary.rescope_document(doc_id, labels)
        full = bool(to_read) and (not held or (len(to_read) > VOCABULARY_FULL_READ_AT
                                               and len(to_read) > VOCABULARY_FULL_READ_SHARE * len(listed)))
        if full:
            seen = set()
            for batch in self.store.export_documents():
                for doc_id, chunks in batch.items():
                    seen.add(doc_id)
                    self._hold(vocabulary, doc_id, chunks, unless_held=True)
            for doc_id in vocabulary.document_keys().keys() - seen:  # removed while the index was read
                removed += vocabulary.remove_document(doc_id)
            read = len(seen)
        else:
            for doc_id in to_read:
                read += self._hold(vocabulary, doc_id, self.store.chunks_of(doc_id))
        return VocabularyRefresh(documents=len(listed), documents_read=read,
                                 documents_removed=removed, documents_rescoped=rescoped, full_read=full)

    @staticmethod
    def _hold(vocabulary: QueryVocabulary, doc_id: str, chunks: list[StoredChunk], *, unless_held: bool = False) -> bool:
        """Hold the document as its chunks read now say (its hash and scope too: what was read is
        what is held, even if the index changed since it was listed); False if it has no chunks
        (it was removed meanwhile) or, ``unless_held``, the vocabulary holds it as it is already."""
        if not chunks:
            vocabulary.remove_document(doc_id)
            return False
        key = (chunks[0].content_hash, chunks[0].scope.labels)
        if unless_held and vocabulary.document_key(doc_id) == key:
            return False
        # A document has one scope (upserts and rescopes write all its chunks at once).
        vocabulary.put_document(doc_id, key[0], key[1], (chunk.text for chunk in chunks))
        return True

    def _current_vocabulary(self) -> QueryVocabulary | None:
        """The vocabulary to mend with: as the last refresh left it (see ``keep_vocabulary_current``);
        a process that never refreshed it (a one-shot ``ask``) builds it on its first question."""
        with self._vocabulary_lock:
            if self._vocabulary_checked is not None:
                return self._vocabulary
        self.refresh_vocabulary(unless_built=True)
        with self._vocabulary_lock:
            return self._vocabulary

    def _search(
        self, question: str, audience: Audience, *, k: int | None, mode: SearchMode | None
    ) -> Retrieval:
        """Every passage found (one per document, ``k`` at most), no floor applied."""
        access = filter_for(audience)  # refuses an empty audience before any work is done
        if not question or not any(ch.isalnum() for ch in question):
            raise QuestionError("the question is empty: ask something in words")
        began = time.perf_counter()
        asked = question
        question, unfamiliar = self._mend(question, access)
        timings: dict[str, float] = {"mend": (time.perf_counter() - began) * 1000}
        k = k or self.options.k
        candidates = max(self.options.candidates, k * 4)  # room to collapse chunks into documents
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
        passages = tuple(collapse_by_document(hits)[:k])
        return Retrieval(question=asked, passages=passages, timings_ms=timings,
                         question_vector=embedded[0] if embedded else None,
                         top_similarity=max((p.similarity for p in passages), default=None),
                         searched_as=question, unfamiliar_words=unfamiliar)

    def retrieve(self, question: str, audience: Audience, *, k: int | None = None) -> Retrieval:
        """The passages good enough to answer from: at or above the relevance floor, or holding
        every content word of the question (or of the first question the message asks) and at or
        above the lower floor for that."""
        searched = self._search(question, audience, k=k, mode=None)
        # The question asked first is enough ("whos the cfo? need to cc them on a big deal"); a later
        # one leans on it ("…? phone number?") and alone would let in any passage naming a phone.
        # (Every word of the whole message held means every word of its first question is too.)
        wanted = terms(question_parts(searched.searched_as)[0])
        good = tuple(p for p in searched.passages if self._good_enough(p, wanted))
        return replace(searched, passages=good)

    def _good_enough(self, passage: Passage, wanted: set[str]) -> bool:
        if passage.similarity >= self.options.min_similarity:
            return True
        if passage.similarity < self.options.min_similarity_all_words or not wanted:
            return False
        return wanted <= terms(f"{passage.title}\n{' '.join(passage.heading_path)}\n{passage.text}")


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
