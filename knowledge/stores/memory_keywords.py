"""Keyword (BM25) search over an in-memory copy of the index's texts, scored as LanceDB scores.

A long-running process (the bot) keeps this beside its in-memory vectors. LanceDB's full-text
queries cost 5 to 7 ms each at 100k chunks, and a hybrid search makes two (chunks and whole
documents); on a 2-core machine they took the cores from the question's embedding and the dense
search. Scoring here reads only the postings of the question's words: about 2 ms for both.

It is an accelerator, not a second ranking: the analyzer reproduces the full-text index lorebot
creates (``FTS(language="English", stem=True, remove_stop_words=True)``, LanceDB's defaults
otherwise), and the scores are LanceDB's BM25, so a search ranks the same either way.
``tests/test_memory_keywords.py`` checks that against LanceDB on the same table. The analysis,
found by probing LanceDB's index (its documentation does not spell it out):

1. split on every character that is neither a letter nor a digit;
2. drop tokens of 40 bytes or more;
3. lower-case;
4. stem (Snowball English, the Porter2 algorithm);
5. drop stop words (the NLTK English list), looked up *after* stemming: "because" (stem "becaus")
   stays, "doing" (stem "do") goes;
6. fold to ASCII: "élan" → "elan", "æsir" → "aesir", "¼" → "14". Folding comes after stemming,
   so "École" (stem "école") is indexed as "ecole", and a question's "ecole" (stem "ecol") misses
   it, as it does in LanceDB.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import Stemmer

from knowledge.stores.visible_rows import VisibleRows

# LanceDB's BM25 parameters (fixed there).
K1 = 1.2
B = 0.75
MAX_TOKEN_BYTES = 40
STOP_WORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before
being below between both but by can couldn d did didn do does doesn doing don down during each
few for from further had hadn has hasn have haven having he her here hers herself him himself his
how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself needn no
nor not now o of off on once only or other our ours ourselves out over own re s same shan she
should shouldn so some such t than that the their theirs them themselves then there these they
this those through to too under until up ve very was wasn we were weren what when where which
while who whom why will with won wouldn y you your yours yourself yourselves
""".split())
_WORD = re.compile(r"[^\W_]+")
# Letters that do not decompose into an ASCII base letter but that ASCII folding still maps.
_FOLD_EXTRA = {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}


def fold_to_ascii(word: str) -> str:
    """Precomposed letters to their ASCII base: accents dropped, ligatures and compatibility forms
    expanded. Characters with no ASCII form (Greek, CJK, a lone combining mark) stay.

    >>> fold_to_ascii("naïve"), fold_to_ascii("æsir"), fold_to_ascii("¼"), fold_to_ascii("ωmega")
    ('naive', 'aesir', '14', 'ωmega')
    """
    if word.isascii():
        return word
    out = []
    for ch in word:
        if ch.isascii():
            out.append(ch)
        elif ch in _FOLD_EXTRA:
            out.append(_FOLD_EXTRA[ch])
        else:
            decomposed = unicodedata.normalize("NFKD", ch)
            if decomposed == ch:
                out.append(ch)
            else:  # keep the letters and digits of the decomposition ("1⁄4" → "14")
                out.extend(c for c in decomposed if c.isalnum())
    return "".join(out)


class Analyzer:
    """Text to index terms, as LanceDB's full-text index analyzes it (see the module's notes).

    >>> Analyzer().terms("Because the runners were RUNNING, naïvely: ¼ of them")
    ['becaus', 'runner', 'run', 'naiv', '14']
    """

    def __init__(self):
        self._stemmer = Stemmer.Stemmer("english")
        # A PyStemmer object must not be used by two threads at once; questions are analyzed in the
        # store's pool, and only a word not seen before reaches the stemmer.
        self._stemmer_lock = threading.Lock()
        self._terms: dict[str, str] = {}  # raw word → term ("" for a word that is dropped)

    def terms(self, text: str) -> list[str]:
        term_of = self._terms.get
        found = [term_of(word) for word in _WORD.findall(text)]
        if None in found:
            found = [self._term(word) for word in _WORD.findall(text)]
        return [term for term in found if term]

    def _term(self, word: str) -> str:
        term = self._terms.get(word)
        if term is None:
            term = ""
            if len(word.encode()) < MAX_TOKEN_BYTES:
                with self._stemmer_lock:
                    stem = self._stemmer.stemWord(word.lower())
                if stem not in STOP_WORDS:
                    term = fold_to_ascii(stem)
            self._terms[word] = term
        return term


@dataclass(frozen=True)
class BM25Postings:
    """Per term, the rows that hold it and their BM25 weight: a term's score in a row is fixed by
    the table alone, so a question's score is a sum of precomputed weights."""

    rows: int
    starts: np.ndarray  # term ID → its postings are [starts[t], starts[t + 1])
    positions: np.ndarray  # int32 row positions
    weights: np.ndarray  # float32

    @classmethod
    def build(cls, texts: Iterable[str], analyzer: Analyzer, vocabulary: dict[str, int]) -> BM25Postings:
        """From the texts, row by row. New terms are added to ``vocabulary`` (shared by the tables
        one question searches, so it is analyzed once)."""
        term_ids, lengths = array("i"), array("i")
        for text in texts:
            terms = analyzer.terms(text)
            term_ids.extend(vocabulary.setdefault(term, len(vocabulary)) for term in terms)
            lengths.append(len(terms))
        rows, terms = len(lengths), len(vocabulary)
        length = np.frombuffer(lengths, dtype=np.int32)
        # One (term, row) key per token, sorted in place: equal keys are one posting, and their
        # count its term frequency. (In place, and freeing as it goes: at 100k chunks there are
        # 11M tokens, and np.unique's copies tripled the memory the serving bot peaked at.)
        key = np.frombuffer(term_ids, dtype=np.int32).astype(np.int64)
        del term_ids
        key *= max(rows, 1)
        key += np.repeat(np.arange(rows, dtype=np.int64), length)
        key.sort()
        first = np.flatnonzero(np.diff(key, prepend=-1)) if key.size else np.zeros(0, np.int64)
        frequency = np.diff(first, append=key.size).astype(np.float64)
        pairs = key[first]
        del key
        term, position = np.divmod(pairs, max(rows, 1))
        del pairs
        documents_with = np.bincount(term, minlength=terms)
        idf = np.log(1.0 + (rows - documents_with + 0.5) / (documents_with + 0.5))
        average = float(length.mean()) if rows and length.sum() else 1.0
        weights = idf[term] * frequency * (K1 + 1) / (frequency + K1 * (1 - B + B * length[position] / average))
        return cls(rows=rows, starts=np.searchsorted(term, np.arange(terms + 1)),
                   positions=position.astype(np.int32), weights=weights.astype(np.float32))

    def top(self, term_ids: list[int], mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and scores of the ``k`` best rows ``mask`` lets through, best first."""
        spans = [(self.starts[t], self.starts[t + 1]) for t in term_ids if t + 1 < len(self.starts)]
        if not spans or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        positions = np.concatenate([self.positions[a:b] for a, b in spans])
        weights = np.concatenate([self.weights[a:b] for a, b in spans])
        scores = np.bincount(positions, weights, minlength=self.rows)
        matched = np.flatnonzero(scores)
        matched = matched[mask[matched]]
        if matched.size > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        best = matched[np.argsort(-scores[matched], kind="stable")]
        return best, scores[best]


@dataclass(frozen=True)
class KeywordSnapshot:
    """Keyword search over one version of the chunks table (and of the documents table, if any).

    ``versions`` labels what it was read from; the store uses it only while both tables are still
    at those versions, and asks LanceDB otherwise.
    """

    versions: tuple
    analyzer: Analyzer
    vocabulary: dict[str, int]
    chunks: BM25Postings
    chunk_ids: pa.Array
    chunk_doc_ids: pa.Array
    row_ids: np.ndarray
    chunk_rows: VisibleRows
    documents: BM25Postings | None
    document_ids: pa.Array | None
    document_rows: VisibleRows | None

    @classmethod
    def from_arrow(cls, *, versions: tuple, chunks: Rows, documents: Rows | None) -> KeywordSnapshot:
        """``chunks``: columns ``chunk_id``, ``doc_id``, ``scope``, ``search_text``, ``_rowid``;
        ``documents``: ``doc_id``, ``scope``, ``search_text`` (None: chunk scores rank alone). Each a
        table or a stream of record batches; texts are analyzed batch by batch and not kept."""
        analyzer, vocabulary = Analyzer(), {}
        chunk_columns: list[pa.RecordBatch] = []
        chunk_postings = BM25Postings.build(_texts(chunks, chunk_columns), analyzer, vocabulary)
        chunk_table = _table(chunk_columns, {"chunk_id": pa.string(), "doc_id": pa.string(),
                                             "scope": pa.list_(pa.string()), "_rowid": pa.uint64()})
        document_table = document_postings = None
        if documents is not None:
            document_columns: list[pa.RecordBatch] = []
            document_postings = BM25Postings.build(_texts(documents, document_columns), analyzer, vocabulary)
            document_table = _table(document_columns, {"doc_id": pa.string(), "scope": pa.list_(pa.string())})
        return cls(
            versions=versions, analyzer=analyzer, vocabulary=vocabulary, chunks=chunk_postings,
            chunk_ids=chunk_table["chunk_id"].combine_chunks(), chunk_doc_ids=chunk_table["doc_id"].combine_chunks(),
            row_ids=chunk_table["_rowid"].to_numpy(), chunk_rows=VisibleRows(chunk_table["scope"]),
            documents=document_postings,
            document_ids=document_table["doc_id"].combine_chunks() if document_table is not None else None,
            document_rows=VisibleRows(document_table["scope"]) if document_table is not None else None,
        )

    def matches(self, words: str, allowed: frozenset[str], limit: int) -> tuple[dict, dict]:
        """:meth:`chunk_matches` and :meth:`document_scores` of one question, analyzed once."""
        term_ids = self._term_ids(words)
        return self._chunk_matches(term_ids, allowed, limit), self._document_scores(term_ids, allowed, limit)

    def chunk_matches(self, words: str, allowed: frozenset[str], limit: int) -> dict[str, tuple[float, int, str]]:
        """``{chunk_id: (BM25 score, row id, doc_id)}`` of the best matches ``allowed`` may see."""
        return self._chunk_matches(self._term_ids(words), allowed, limit)

    def document_scores(self, words: str, allowed: frozenset[str], limit: int) -> dict[str, float]:
        """``{doc_id: BM25 score of the whole document}`` of the best matches ``allowed`` may see."""
        return self._document_scores(self._term_ids(words), allowed, limit)

    def _chunk_matches(self, term_ids: list[int], allowed: frozenset[str], limit: int) -> dict[str, tuple[float, int, str]]:
        best, scores = self.chunks.top(term_ids, self.chunk_rows.mask(allowed), limit)
        taken = pa.array(best, pa.int64())
        return dict(zip(self.chunk_ids.take(taken).to_pylist(), zip(
            scores.tolist(), self.row_ids[best].tolist(), self.chunk_doc_ids.take(taken).to_pylist())))

    def _document_scores(self, term_ids: list[int], allowed: frozenset[str], limit: int) -> dict[str, float]:
        if self.documents is None:
            return {}
        best, scores = self.documents.top(term_ids, self.document_rows.mask(allowed), limit)
        return dict(zip(self.document_ids.take(pa.array(best, pa.int64())).to_pylist(), scores.tolist()))

    def _term_ids(self, words: str) -> list[int]:
        return [self.vocabulary[t] for t in self.analyzer.terms(words) if t in self.vocabulary]


Rows = pa.Table | Iterable[pa.RecordBatch]


def _texts(rows: Rows, other_columns: list[pa.RecordBatch]) -> Iterator[str]:
    """Each row's ``search_text``, batch by batch; the batches' other columns go to ``other_columns``."""
    batches = rows.to_batches(max_chunksize=8192) if isinstance(rows, pa.Table) else rows
    for batch in batches:
        other_columns.append(batch.drop_columns(["search_text"]))
        for text in batch.column("search_text").to_pylist():
            yield text or ""


def _table(batches: list[pa.RecordBatch], empty: dict[str, pa.DataType]) -> pa.Table:
    if not batches:
        return pa.table({name: pa.array([], kind) for name, kind in empty.items()})
    return pa.Table.from_batches(batches)
