"""Filtered hybrid query latency, and ANN recall against exact search, at 10k, 100k and 1M chunks.

    .venv/bin/python benchmarks/query_latency.py [--sizes 10000,100000,1000000] [--modes hybrid,dense,bm25]

Built indexes are kept in the out dir and reused while their corpus parameters match (the 1M one
takes about ten minutes to build and 5.6 GB of disk).

The corpus
    SciFact abstracts are chunked with the project's own chunker. Up to ``--real-chunks`` of those
    chunks (whole documents, those cited by the test queries first) are embedded with the real
    embedder; the vectors are cached in the out dir, keyed by a hash of the texts and the model ID.
    A size larger than that is filled with synthetic chunks:

    - vector: a kernel density draw around the real embeddings. Each synthetic document picks
      one real chunk as its "parent"; each of its chunks gets the parent's vector plus noise
      shaped by the covariance of the real vectors, L2-normalised like the encoder's output. The
      noise is scaled so that as many draws as there are real chunks would be as tightly packed
      (median cosine to the nearest other one) as the real chunks are to their nearest chunk *of
      another document*: the synthetic part keeps the real data's topical clusters and spread.
      (The first version drew from one Gaussian fitted to the real vectors, which has no clusters;
      an IVF index then has to probe every partition, which no real corpus asks of it.)
    - text: sentences of the parent's document mixed with sentences sampled from the whole SciFact
      corpus, packed into chunks of 40–120 words (the real chunks' median is ~65), under the
      parent's title. BM25 therefore sees realistic vocabulary, term statistics and chunk lengths,
      and a chunk's words and vector are about the same topic.

Access
    50 channels, C0BENCH00 (biggest) … C0BENCH49 (smallest). Each document is public with
    probability 0.35; otherwise it belongs to a channel drawn from a Zipf(1.0) law over the 50
    (a few big channels, a long tail of small ones), and one in ten of those also to a second.

Queries
    The 300 SciFact test claims, each asked from a channel drawn with a fixed seed: half from the
    5 biggest channels, half from the 45 others (uniformly, so the smallest ones are asked too).
    Latency is the wall time of ``Retriever.search(question, audience, k=10)``, which embeds the
    question and runs the filtered store query, measured after 20 warm-up queries, with the store
    and embedder set up as the bot (a long-running process) has them: questions embedded by the
    ONNX export of the model, vectors, rows and keyword postings in memory below the ANN threshold
    (the postings are built before timing, as a serving bot has them after its first minute;
    "kw index s" is how long that took). "embed" and
    "rest" split it as the retriever reports (``timings["embed"]``, ``timings["search"]``: the
    time beyond embedding, since the store may search by keyword while the question is embedded).

Recall
    For the first 100 queries, the store's dense top 10 (from its in-memory vectors below
    ``ann_min_rows``; ANN above, when the audience sees enough rows) is compared with the top 10 of
    a second ``LanceStore`` on the same directory that always has LanceDB search exactly (no
    in-memory copy, ANN index bypassed) — an independent reference: recall@10,
    the largest difference between the similarities the two report for the same chunk (the
    relevance floor is applied to that number), and how often ``Retriever.retrieve`` finds an
    answer above the floor with each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# LanceDB's Rust log down to errors: a store version that logged a deprecation warning on every
# query buried the progress lines under thousands of copies.
os.environ.setdefault("LANCEDB_LOG", "error")

from benchmarks.common import (  # noqa: E402
    DEFAULT_OUT_DIR, SCIFACT_DIR, CorpusDoc, disk_usage_bytes, embed_cached, emit_json, fmt, latency_summary,
    load_corpus, load_qrels, load_queries, log, foreign_load, print_table, source_digests, stopwatch,
)
from knowledge.access import Audience, Scope, filter_for  # noqa: E402
from knowledge.chunking import ChunkingOptions, chunk_document  # noqa: E402
from knowledge.embedding import Embedder, load_embedder  # noqa: E402
from knowledge.ingest import embedding_hash  # noqa: E402
from knowledge.retrieval import RetrievalOptions, Retriever  # noqa: E402
from knowledge.stores.base import SearchRequest  # noqa: E402
from knowledge.stores.lancedb import LanceStore  # noqa: E402
from knowledge.types import Chunk, Document, StoredChunk  # noqa: E402

BENCHMARK = "query_latency"
# p95 latency targets by corpus size, and the ANN recall@10 target against exact search.
TARGET_P95_MS = {100_000: 30.0, 1_000_000: 80.0}
TARGET_RECALL = 0.95
CHANNELS = [f"C0BENCH{i:02d}" for i in range(50)]
PUBLIC_SHARE = 0.35
ZIPF_EXPONENT = 1.0
SECOND_CHANNEL_SHARE = 0.10
BIG_CHANNELS = 5
SMALL_CHANNELS = 10
MANIFEST = "bench-manifest.json"
# Bump when the way a corpus is generated changes, so stale indexes are rebuilt, not reused.
CORPUS_VERSION = 2


# --- Options -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes in chunks (comma-separated)")
    parser.add_argument("--modes", default="hybrid", help="search modes to time: hybrid, dense, bm25 (comma-separated)")
    parser.add_argument("--real-chunks", type=int, default=6000, help="real SciFact chunks to embed (the rest is synthetic)")
    parser.add_argument("--queries", type=int, default=300, help="test queries to time (at most 300)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up queries before timing each mode")
    parser.add_argument("--recall-queries", type=int, default=100, help="queries for ANN recall@10")
    parser.add_argument("--k", type=int, default=10, help="passages per query")
    parser.add_argument("--batch", type=int, default=5000, help="chunks per upsert (split at document boundaries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scifact", type=Path, default=SCIFACT_DIR, help="BEIR SciFact folder")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="caches and built indexes")
    parser.add_argument("--rebuild", action="store_true", help="rebuild indexes even if a matching one exists")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in ("hybrid", "dense", "bm25")]
    if bad:
        parser.error(f"unknown mode(s): {', '.join(bad)}")
    return args


# --- The corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchChunk:
    """One chunk of a benchmark corpus, before it gets a scope (its vector is the same row of an array)."""

    doc_id: str
    position: int
    title: str
    text: str
    synthetic: bool

    @property
    def embedding_text(self) -> str:
        return Chunk(chunk_id="", doc_id=self.doc_id, position=self.position, title=self.title,
                     heading_path=(), text=self.text).embedding_text


def chunk_corpus(corpus: list[CorpusDoc]) -> dict[str, list[Chunk]]:
    """Every SciFact document through the product's chunker, keyed by document."""
    options = ChunkingOptions()
    chunked = {}
    for d in corpus:
        doc = Document(doc_id=f"scifact-{d.doc_id}", title=d.title, source="", path="", text=d.text,
                       content_hash="", scope=Scope.public())
        chunked[d.doc_id] = chunk_document(doc, options)
    return chunked


def sample_real_chunks(chunked: dict[str, list[Chunk]], *, limit: int, cited: set[str], seed: int) -> list[BenchChunk]:
    """Whole documents until ``limit`` chunks; documents the test queries cite come first, so that
    the queries have their answers in the index (results then look like real use, not noise)."""
    rng = np.random.default_rng([seed, 1])
    first = sorted(d for d in chunked if d in cited)
    rest = sorted(d for d in chunked if d not in cited)
    order = [first[i] for i in rng.permutation(len(first))] + [rest[i] for i in rng.permutation(len(rest))]
    picked: list[BenchChunk] = []
    for doc_id in order:
        for c in chunked[doc_id]:
            picked.append(BenchChunk(doc_id=c.doc_id, position=c.position, title=c.title, text=c.text, synthetic=False))
        if len(picked) >= limit:
            break
    return picked[:limit]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
# Of a synthetic chunk's sentences, the share taken from its parent's document (the rest: anywhere).
PARENT_SENTENCE_SHARE = 0.5


def split_sentences(text: str) -> list[str]:
    """Sentences of ordinary length, the raw material of synthetic chunks."""
    return [s for s in _SENTENCE.split(text) if 4 <= len(s.split()) <= 80]


@dataclass
class SentenceSource:
    """Sentences to build synthetic text from: per SciFact document, and all of them."""

    by_doc: dict[str, list[str]]
    pool: list[str]

    @classmethod
    def from_corpus(cls, corpus: list[CorpusDoc]) -> SentenceSource:
        by_doc = {f"scifact-{d.doc_id}": split_sentences(d.text) for d in corpus}
        return cls(by_doc=by_doc, pool=[s for sentences in by_doc.values() for s in sentences])

    def text(self, rng: np.random.Generator, doc_id: str, target_words: int) -> str:
        own = self.by_doc.get(doc_id) or self.pool
        sentences, words = [], 0
        while words < target_words:
            source = own if rng.random() < PARENT_SENTENCE_SHARE else self.pool
            sentence = source[rng.integers(len(source))]
            sentences.append(sentence)
            words += len(sentence.split())
        return " ".join(sentences)


def synthetic_chunks(n: int, *, real: list[BenchChunk], sentences: SentenceSource,
                     seed: int) -> tuple[list[BenchChunk], np.ndarray]:
    """``n`` chunks of 40–120 words, 1–5 per synthetic document, and for each the index of its
    parent real chunk (one per document: a document's chunks share a topic)."""
    rng = np.random.default_rng([seed, 2])
    chunks: list[BenchChunk] = []
    parents: list[int] = []
    doc = 0
    while len(chunks) < n:
        parent = int(rng.integers(len(real)))
        for position in range(int(rng.integers(1, 6))):
            text = sentences.text(rng, real[parent].doc_id, int(rng.integers(40, 121)))
            chunks.append(BenchChunk(doc_id=f"synth-{doc:07d}", position=position, title=real[parent].title,
                                     text=text, synthetic=True))
            parents.append(parent)
        doc += 1
    return chunks[:n], np.asarray(parents[:n])


def noise_basis(vectors: np.ndarray) -> np.ndarray:
    """A matrix ``B`` such that ``z @ B.T`` (``z`` standard normal) has the real vectors' covariance."""
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(vectors, rowvar=False, dtype=np.float64))
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))).astype(np.float32)


def _perturb(parents: np.ndarray, basis: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    z = rng.standard_normal((len(parents), basis.shape[0]), dtype=np.float32)
    drawn = parents + scale * (z @ basis.T)
    return drawn / np.linalg.norm(drawn, axis=1, keepdims=True)


def packing(vectors: np.ndarray, groups: np.ndarray) -> float:
    """Median over ``vectors`` of the cosine to the nearest one of another group (document)."""
    best = []
    for start in range(0, len(vectors), 1000):
        sims = vectors[start:start + 1000] @ vectors.T
        sims[groups[start:start + 1000, None] == groups[None, :]] = -1.0
        best.append(sims.max(axis=1))
    return float(np.median(np.concatenate(best)))


def noise_scale(vectors: np.ndarray, basis: np.ndarray, target: float, *, seed: int) -> float:
    """The noise scale at which as many draws as there are real vectors, each around a random
    real one, are as tightly packed (:func:`packing`) as the real vectors of different documents
    (``target``). Bisection: packing falls as the scale grows."""
    rng = np.random.default_rng([seed, 7])
    low, high = 0.0, 4.0
    for _ in range(20):
        middle = (low + high) / 2
        draws = _perturb(vectors[rng.integers(len(vectors), size=len(vectors))], basis, middle, rng)
        low, high = (middle, high) if packing(draws, np.arange(len(draws))) > target else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class VectorModel:
    """How synthetic vectors are drawn around the real ones (reported in the JSON line)."""

    basis: np.ndarray
    scale: float
    target_similarity: float

    @classmethod
    def fit(cls, real: list[BenchChunk], vectors: np.ndarray, *, seed: int) -> VectorModel:
        target = packing(vectors, np.asarray([c.doc_id for c in real]))
        basis = noise_basis(vectors)
        return cls(basis=basis, scale=noise_scale(vectors, basis, target, seed=seed), target_similarity=target)

    def draw(self, real_vectors: np.ndarray, parents: np.ndarray, *, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 3])
        out = np.empty((len(parents), real_vectors.shape[1]), dtype=np.float32)
        for start in range(0, len(parents), 50_000):  # in slices: the noise of 1M rows at once is 1.5 GB
            out[start:start + 50_000] = _perturb(real_vectors[parents[start:start + 50_000]], self.basis,
                                                 self.scale, rng)
        return out


# --- Access: who may see each document ----------------------------------------------------------


def zipf_weights(n: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Probability of each of ``n`` ranks under a Zipf law, biggest first."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def draw_scopes(doc_ids: list[str], *, seed: int) -> dict[str, Scope]:
    """A scope per document: public, one channel (Zipf), or occasionally two channels."""
    rng = np.random.default_rng([seed, 4])
    weights = zipf_weights(len(CHANNELS))
    scopes = {}
    for doc_id in doc_ids:
        if rng.random() < PUBLIC_SHARE:
            scopes[doc_id] = Scope.public()
            continue
        picked = rng.choice(len(CHANNELS), size=2 if rng.random() < SECOND_CHANNEL_SHARE else 1,
                            replace=False, p=weights)
        scopes[doc_id] = Scope.channels([CHANNELS[i] for i in picked])
    return scopes


# --- Building an index -------------------------------------------------------------------------


@dataclass
class Corpus:
    """The chunks of one size, their vectors (row i for chunk i) and their documents' scopes."""

    chunks: list[BenchChunk]
    vectors: np.ndarray
    scopes: dict[str, Scope]

    def visible_counts(self) -> dict[str, int]:
        """Chunks each channel may see: public ones plus its own."""
        public = sum(1 for c in self.chunks if self.scopes[c.doc_id].is_public)
        own = Counter(label for c in self.chunks for label in self.scopes[c.doc_id].labels if label != "public")
        return {ch: public + own.get(ch, 0) for ch in CHANNELS}

    def channel_counts(self) -> dict[str, int]:
        """Chunks scoped to each channel (a two-channel chunk counts for both)."""
        own = Counter(label for c in self.chunks for label in self.scopes[c.doc_id].labels if label != "public")
        return {ch: own.get(ch, 0) for ch in CHANNELS}


def make_corpus(size: int, *, real: list[BenchChunk], real_vectors: np.ndarray, sentences: SentenceSource,
                model: VectorModel, seed: int) -> Corpus:
    """The first ``size`` real chunks, then synthetic ones up to ``size``."""
    n_real = min(size, len(real))
    synth, parents = synthetic_chunks(size - n_real, real=real, sentences=sentences, seed=seed)
    vectors = np.concatenate([real_vectors[:n_real], model.draw(real_vectors, parents, seed=seed)])
    chunks = real[:n_real] + synth
    doc_ids = list(dict.fromkeys(c.doc_id for c in chunks))
    return Corpus(chunks=chunks, vectors=vectors, scopes=draw_scopes(doc_ids, seed=seed))


def stored_batches(corpus: Corpus, *, model_id: str, batch: int):
    """``{doc_id: [StoredChunk]}`` batches of about ``batch`` chunks, never splitting a document:
    an upsert replaces *all* chunks of the documents it names, so a split document would lose half."""
    current: dict[str, list[StoredChunk]] = {}
    size = 0
    for i, c in enumerate(corpus.chunks):
        if c.doc_id not in current and size >= batch:
            yield current
            current, size = {}, 0
        current.setdefault(c.doc_id, []).append(StoredChunk(
            chunk_id=f"{c.doc_id}:{c.position}", doc_id=c.doc_id, position=c.position, title=c.title,
            heading_path=(), text=c.text, source=f"bench://{c.doc_id}", path="", scope=corpus.scopes[c.doc_id],
            content_hash=c.doc_id, embedding_hash=embedding_hash(model_id, c.embedding_text),
            vector=corpus.vectors[i],
        ))
        size += 1
    if current:
        yield current


@dataclass
class BuiltIndex:
    """An index on disk and what is known about how it was built."""

    size: int
    path: Path
    params: dict
    real_chunks: int = 0
    synthetic_chunks: int = 0
    upsert_s: float = 0.0
    optimize_s: float = 0.0
    batch_s: list[float] = field(default_factory=list)
    channel_counts: dict[str, int] = field(default_factory=dict)
    visible_counts: dict[str, int] = field(default_factory=dict)
    reused: bool = False

    def manifest(self) -> dict:
        return {"params": self.params, "real_chunks": self.real_chunks, "synthetic_chunks": self.synthetic_chunks,
                "upsert_s": self.upsert_s, "optimize_s": self.optimize_s, "batch_s": self.batch_s,
                "channel_counts": self.channel_counts, "visible_counts": self.visible_counts}

    @classmethod
    def load(cls, size: int, path: Path, params: dict) -> BuiltIndex | None:
        """The index at ``path`` if it was completely built with the same parameters."""
        try:
            saved = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if saved.get("params") != params:
            return None
        fields = {k: saved[k] for k in ("real_chunks", "synthetic_chunks", "upsert_s", "optimize_s", "batch_s",
                                        "channel_counts", "visible_counts")}
        return cls(size=size, path=path, params=params, reused=True, **fields)

    def channels_by_size(self) -> list[str]:
        """Channels from the one with the most chunks to the one with the fewest."""
        return sorted(CHANNELS, key=lambda ch: (-self.channel_counts[ch], ch))


def build_index(corpus: Corpus, *, path: Path, params: dict, embedder: Embedder, batch: int) -> BuiltIndex:
    """Write the corpus through ``upsert_documents`` in batches, then ``optimize()`` (ANN at ≥ ann_min_rows)."""
    if path.exists():
        shutil.rmtree(path)
    store = LanceStore(path, dimension=embedder.dimension, model_id=embedder.model_id)
    built = BuiltIndex(size=len(corpus.chunks), path=path, params=params,
                       real_chunks=sum(not c.synthetic for c in corpus.chunks),
                       synthetic_chunks=sum(c.synthetic for c in corpus.chunks),
                       channel_counts=corpus.channel_counts(), visible_counts=corpus.visible_counts())
    written = 0
    for rows in stored_batches(corpus, model_id=embedder.model_id, batch=batch):
        with stopwatch() as t:
            store.upsert_documents(rows)
        built.batch_s.append(round(t[0], 3))
        written += sum(len(v) for v in rows.values())
        log(f"  upserted {written}/{built.size} chunks (batch {t[0]:.1f}s)")
    built.upsert_s = round(sum(built.batch_s), 3)
    log(f"  optimize() on {store.count()} chunks …")
    with stopwatch() as t:
        store.optimize()
    built.optimize_s = round(t[0], 3)
    store.close()
    (path / MANIFEST).write_text(json.dumps(built.manifest()))  # last: its presence means "complete"
    return built


def ann_settings(path: Path) -> dict | None:
    """The store's tuned ANN settings (``ann.json``, written when it builds the vector index)."""
    try:
        return json.loads((path / "ann.json").read_text())
    except (OSError, ValueError):
        return None


# --- Queries -----------------------------------------------------------------------------------


def assign_channels(query_ids: list[str], ranked_channels: list[str], *, seed: int) -> dict[str, str]:
    """Half the queries from the biggest channels, half from all the others, with a fixed seed."""
    rng = np.random.default_rng([seed, 5])
    big, others = ranked_channels[:BIG_CHANNELS], ranked_channels[BIG_CHANNELS:]
    from_big = np.zeros(len(query_ids), dtype=bool)
    from_big[: len(query_ids) // 2] = True
    rng.shuffle(from_big)
    return {q: (big[rng.integers(len(big))] if b else others[rng.integers(len(others))])
            for q, b in zip(query_ids, from_big)}


@dataclass
class LatencyResult:
    size: int
    mode: str
    total_s: list[float]
    cpu_s: list[float]
    embed_ms: list[float]
    search_ms: list[float]
    from_big: list[bool]
    foreign_load: float = float("nan")

    def as_dict(self) -> dict:
        summary = latency_summary(self.total_s)
        big = [t for t, b in zip(self.total_s, self.from_big) if b]
        others = [t for t, b in zip(self.total_s, self.from_big) if not b]
        target = TARGET_P95_MS.get(self.size)
        return {
            "size": self.size, "mode": self.mode, **summary,
            "cpu_p50_ms": latency_summary(self.cpu_s)["p50_ms"],
            "embed_p50_ms": round(float(np.median(self.embed_ms)), 3),
            "search_p50_ms": round(float(np.median(self.search_ms)), 3),
            "search_p95_ms": round(float(np.percentile(self.search_ms, 95)), 3),
            "p95_big_channels_ms": latency_summary(big)["p95_ms"],
            "p95_other_channels_ms": latency_summary(others)["p95_ms"],
            "other_processes_cpu_share": self.foreign_load,
            "target_p95_ms": target,
            "meets_target": None if target is None else summary["p95_ms"] <= target,
        }


def time_queries(retriever: Retriever, *, size: int, mode: str, questions: list[tuple[str, str]],
                 warmup: list[tuple[str, str]], k: int, big: set[str]) -> LatencyResult:
    """Per-query wall time of ``Retriever.search`` (question embedding included), after a warm-up."""
    for text, channel in warmup:
        retriever.search(text, Audience.for_conversation(channel), k=k, mode=mode)
    result = LatencyResult(size=size, mode=mode, total_s=[], cpu_s=[], embed_ms=[], search_ms=[], from_big=[])
    with foreign_load() as others:
        for text, channel in questions:
            audience = Audience.for_conversation(channel)
            # CPU time as well as wall time: on a shared 2-core machine wall time also counts waiting
            # for a core, while CPU time (all threads of this process) does not.
            cpu_started, started = time.process_time(), time.perf_counter()
            _passages, timings = retriever.search(text, audience, k=k, mode=mode)
            result.total_s.append(time.perf_counter() - started)
            result.cpu_s.append(time.process_time() - cpu_started)
            result.embed_ms.append(timings["embed"])
            result.search_ms.append(timings["search"])
            result.from_big.append(channel in big)
    result.foreign_load = others["share"]
    return result


def dense_hits(store: LanceStore, vector: np.ndarray, text: str, channel: str, *, k: int) -> dict[str, float]:
    """The store's dense top ``k`` as chunk ID → reported similarity, asked the way the retriever
    asks (same candidate count)."""
    candidates = max(RetrievalOptions().candidates, k * 4)
    request = SearchRequest(text=text, vector=vector, k=k, mode="dense", candidates=candidates)
    hits = store.search(request, filter_for(Audience.for_conversation(channel)))
    return {hit.chunk.chunk_id: hit.similarity for hit in hits}


@dataclass
class Agreement:
    """How the store's dense results compare with exact search, ask by ask."""

    recalls: list[float] = field(default_factory=list)
    # |similarity the store reports - exact cosine| for chunks both found: the relevance floor
    # is applied to this number, so a store that ranks right but reports wrong still misanswers.
    similarity_errors: list[float] = field(default_factory=list)


def compare_with_exact(store: LanceStore, exact: LanceStore, asks: list[tuple[str, np.ndarray, str]], *, k: int) -> Agreement:
    """Per ask (text, vector, channel): recall@k = |store top k ∩ exact top k| / |exact top k|."""
    agreement = Agreement()
    for text, vector, channel in asks:
        truth = dense_hits(exact, vector, text, channel, k=k)
        found = dense_hits(store, vector, text, channel, k=k)
        agreement.recalls.append(len(found.keys() & truth.keys()) / max(1, len(truth)))
        agreement.similarity_errors.extend(abs(found[c] - truth[c]) for c in found.keys() & truth.keys())
    return agreement


def found_rate(retriever: Retriever, asks: list[tuple[str, np.ndarray, str]]) -> float:
    """Share of asks for which ``Retriever.retrieve`` finds a passage above the relevance floor."""
    return float(np.mean([retriever.retrieve(text, Audience.for_conversation(ch)).found for text, _, ch in asks]))


def measure_recall(built: BuiltIndex, store: LanceStore, embedder: Embedder, *, recall_ids: list[str],
                   queries: dict[str, str], channel_of: dict[str, str], vectors: dict[str, np.ndarray],
                   k: int) -> dict:
    """ANN recall@k against exact filtered search: all queries, those from the smallest channels,
    and the same queries all re-asked from the smallest channels (a steadier figure for them)."""
    # No in-memory copy, and exact_search_max_rows: never the ANN index.
    exact = LanceStore(built.path, dimension=embedder.dimension, model_id=embedder.model_id,
                       exact_search_max_rows=sys.maxsize)
    smallest = built.channels_by_size()[-SMALL_CHANNELS:]
    asks = [(queries[q], vectors[q], channel_of[q]) for q in recall_ids]
    overall = compare_with_exact(store, exact, asks, k=k)
    from_small = [r for r, (_, _, ch) in zip(overall.recalls, asks) if ch in smallest]
    reasked = compare_with_exact(store, exact, [(queries[q], vectors[q], smallest[i % len(smallest)])
                                                for i, q in enumerate(recall_ids)], k=k).recalls
    found_store, found_exact = found_rate(Retriever(store, embedder), asks), found_rate(Retriever(exact, embedder), asks)
    exact.close()
    settings = ann_settings(built.path)
    return {
        "size": built.size, "ann_index": settings is not None,
        "nprobes": settings and settings.get("nprobes"),
        "tuned_recall_at_10": settings and round(settings.get("recall_at_10", float("nan")), 4),
        "recall_at_10": round(float(np.mean(overall.recalls)), 4), "n": len(overall.recalls),
        "meets_target": bool(np.mean(overall.recalls) >= TARGET_RECALL),
        "recall_at_10_smallest_channels": round(float(np.mean(from_small)), 4) if from_small else None,
        "n_smallest_channels": len(from_small),
        "recall_at_10_reasked_smallest": round(float(np.mean(reasked)), 4), "n_reasked_smallest": len(reasked),
        "max_similarity_error": round(float(np.max(overall.similarity_errors, initial=0.0)), 4),
        "found_rate_store": round(found_store, 4), "found_rate_exact": round(found_exact, 4),
        "min_recall_reasked_smallest": round(float(np.min(reasked)), 4),
        "smallest_channels": smallest,
        "smallest_channel_visible_rows": built.visible_counts[smallest[-1]],
    }


# --- Reporting ---------------------------------------------------------------------------------


def build_table(builds: list[BuiltIndex], rows: list[dict]) -> Table:
    table = Table(title="Index build (upsert_documents in batches, then optimize)")
    for column in ("chunks", "real", "synthetic", "upsert s", "optimize s", "on disk MB", "ANN index", "reused"):
        table.add_column(column, justify="right")
    for b, row in zip(builds, rows):
        ann = row["ann"]
        table.add_row(f"{b.size:,}", f"{b.real_chunks:,}", f"{b.synthetic_chunks:,}", fmt(b.upsert_s), fmt(b.optimize_s),
                      fmt(row["index_mb"]), f"nprobes {ann['nprobes']}" if ann else "none: exact, in memory",
                      "yes" if b.reused else "no")
    return table


def latency_table(rows: list[dict]) -> Table:
    table = Table(title="Filtered query latency: Retriever.search(k=10), question embedding included")
    for column in ("chunks", "mode", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms", "cpu p50", "embed p50", "rest p50",
                   "p95 big/others", "other load", "kw index s", "target"):
        table.add_column(column, justify="right")
    for r in rows:
        target = "–"
        if r["target_p95_ms"] is not None:
            target = f"p95 ≤ {r['target_p95_ms']:.0f} ms: " + ("[green]met[/]" if r["meets_target"] else "[red]MISSED[/]")
        table.add_row(f"{r['size']:,}", r["mode"], str(r["n"]), fmt(r["p50_ms"]), fmt(r["p95_ms"]), fmt(r["p99_ms"]),
                      fmt(r["mean_ms"]), fmt(r["cpu_p50_ms"]), fmt(r["embed_p50_ms"]), fmt(r["search_p50_ms"]),
                      f"{fmt(r['p95_big_channels_ms'])} / {fmt(r['p95_other_channels_ms'])}",
                      _percent(r["other_processes_cpu_share"]),
                      fmt(r["keyword_index_s"]) if r.get("keyword_index_s") is not None else "– (LanceDB)", target)
    return table


def _percent(share: float) -> str:
    """Other processes' share of the CPU while timing: high means the numbers include waiting."""
    return "–" if share != share else f"{share:.0%}"  # NaN: not measurable here


def _similarity_cell(error: float) -> str:
    """Red when the store's similarities are off by more than rounding (SQ quantization is ~0.01)."""
    return f"[red]{error:.3f}[/]" if error > 0.05 else f"{error:.3f}"


def recall_table(rows: list[dict]) -> Table:
    table = Table(title="The store's dense results vs exact filtered search (recall@10, similarity, relevance floor)")
    for column in ("chunks", "ANN", "tuned", "recall all", "from 10 smallest", "re-asked 10 smallest",
                   "worst", "smallest sees", "max Δ sim", "found store/exact", "target"):
        table.add_column(column, justify="right")
    for r in rows:
        small = "–" if r["recall_at_10_smallest_channels"] is None else \
            f"{r['recall_at_10_smallest_channels']:.3f} (n={r['n_smallest_channels']})"
        table.add_row(f"{r['size']:,}", f"nprobes {r['nprobes']}" if r["ann_index"] else "none: exact, in memory",
                      fmt(r["tuned_recall_at_10"], 3), f"{r['recall_at_10']:.3f} (n={r['n']})", small,
                      f"{r['recall_at_10_reasked_smallest']:.3f} (n={r['n_reasked_smallest']})",
                      f"{r['min_recall_reasked_smallest']:.2f}", f"{r['smallest_channel_visible_rows']:,} rows",
                      _similarity_cell(r["max_similarity_error"]),
                      f"{r['found_rate_store']:.0%} / {r['found_rate_exact']:.0%}",
                      f"≥ {TARGET_RECALL}: " + ("[green]met[/]" if r["meets_target"] else "[red]MISSED[/]"))
    return table


# --- Main --------------------------------------------------------------------------------------


def corpus_params(args: argparse.Namespace, size: int, model_id: str) -> dict:
    """Everything an index's content depends on; a built index is reused only if these match."""
    return {"version": CORPUS_VERSION, "size": size, "real_chunks": args.real_chunks, "seed": args.seed,
            "model_id": model_id, "batch": args.batch, "public_share": PUBLIC_SHARE, "zipf": ZIPF_EXPONENT,
            "second_channel_share": SECOND_CHANNEL_SHARE, "channels": len(CHANNELS)}


def prepare_indexes(args: argparse.Namespace, embedder: Embedder, cited: set[str]) -> list[BuiltIndex]:
    """Reuse each size's index when it matches, else generate its corpus and build it."""
    builds: dict[int, BuiltIndex] = {}
    for size in args.sizes:
        path = args.out_dir / f"index-{size}"
        found = None if args.rebuild else BuiltIndex.load(size, path, corpus_params(args, size, embedder.model_id))
        if found:
            log(f"index-{size}: reusing the index built earlier (--rebuild to build again)")
            builds[size] = found
    missing = [s for s in args.sizes if s not in builds]
    if missing:
        corpus = load_corpus(args.scifact)
        log(f"chunking {len(corpus)} SciFact documents …")
        real = sample_real_chunks(chunk_corpus(corpus), limit=args.real_chunks, cited=cited, seed=args.seed)
        real_vectors = embed_cached(embedder, [c.embedding_text for c in real], args.out_dir)
        sentences = SentenceSource.from_corpus(corpus)
        model = VectorModel.fit(real, real_vectors, seed=args.seed)
        log(f"synthetic vectors: noise scale {model.scale:.3f} for a packing of {model.target_similarity:.3f} "
            "(the real chunks' median cosine to their nearest chunk of another document)")
        for size in missing:
            log(f"index-{size}: generating the corpus …")
            chunks = make_corpus(size, real=real, real_vectors=real_vectors, sentences=sentences, model=model,
                                 seed=args.seed)
            log(f"index-{size}: building ({len(chunks.chunks):,} chunks, {len(chunks.scopes):,} documents) …")
            builds[size] = build_index(chunks, path=args.out_dir / f"index-{size}",
                                       params=corpus_params(args, size, embedder.model_id),
                                       embedder=embedder, batch=args.batch)
    return [builds[s] for s in args.sizes]


def benchmark_index(built: BuiltIndex, embedder: Embedder, args: argparse.Namespace, *, queries: dict[str, str],
                    test_ids: list[str], warmup_texts: list[str], query_vectors: dict[str, np.ndarray]) -> tuple[list[dict], dict]:
    """Latency rows (one per mode) and the recall row for one built index."""
    ranked = built.channels_by_size()
    channel_of = assign_channels(test_ids, ranked, seed=args.seed)
    rng = np.random.default_rng([args.seed, 6])
    warmup = [(t, CHANNELS[rng.integers(len(CHANNELS))]) for t in warmup_texts]
    # As the bot searches (a long-running process: vectors in memory below the ANN threshold).
    store = LanceStore(built.path, dimension=embedder.dimension, model_id=embedder.model_id, vectors_in_memory=True)
    with stopwatch() as keyword_build:
        in_memory = store.prepare_keyword_index()
    if in_memory:
        log(f"index-{built.size}: keyword postings in memory, built in {keyword_build[0]:.1f} s")
    retriever = Retriever(store, embedder)
    latency = []
    for mode in args.modes:
        log(f"index-{built.size}: timing {len(test_ids)} {mode} queries …")
        result = time_queries(retriever, size=built.size, mode=mode, k=args.k, big=set(ranked[:BIG_CHANNELS]),
                              questions=[(queries[q], channel_of[q]) for q in test_ids], warmup=warmup)
        latency.append({**result.as_dict(), "keyword_index_s": round(keyword_build[0], 2) if in_memory else None})
    log(f"index-{built.size}: comparing with exact search on {min(args.recall_queries, len(test_ids))} queries …")
    recall = measure_recall(built, store, embedder, recall_ids=test_ids[: args.recall_queries], queries=queries,
                            channel_of=channel_of, vectors=query_vectors, k=args.k)
    store.close()
    return latency, recall


def build_summary(built: BuiltIndex) -> dict:
    """The build row of the JSON line."""
    by_size = built.channels_by_size()
    index_bytes = disk_usage_bytes(built.path)
    return {
        "size": built.size, "real_chunks": built.real_chunks, "synthetic_chunks": built.synthetic_chunks,
        "upsert_s": built.upsert_s, "optimize_s": built.optimize_s,
        "first_batch_s": built.batch_s[0] if built.batch_s else None,
        "last_batch_s": built.batch_s[-1] if built.batch_s else None,
        "index_bytes": index_bytes, "index_mb": round(index_bytes / 1e6, 1), "ann": ann_settings(built.path),
        "reused": built.reused, "biggest_channel_chunks": built.channel_counts[by_size[0]],
        "smallest_channel_chunks": built.channel_counts[by_size[-1]],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests()  # before anything runs: the code this process imported
    started, load_at_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    queries, qrels = load_queries(args.scifact), load_qrels(args.scifact)
    test_ids = list(qrels)[: args.queries]
    warmup_texts = [text for q, text in queries.items() if q not in qrels][: args.warmup]
    log("loading the embedder …")
    # As the bot (long-running) loads it: questions through the ONNX export, cached beside the indexes.
    embedder = load_embedder(onnx_cache_dir=args.out_dir / "models")
    builds = prepare_indexes(args, embedder, cited={d for docs in qrels.values() for d in docs})
    query_vectors = dict(zip(test_ids, embedder.encode([queries[q] for q in test_ids])))
    latency_rows, recall_rows = [], []
    for built in builds:
        latency, recall = benchmark_index(built, embedder, args, queries=queries, test_ids=test_ids,
                                          warmup_texts=warmup_texts, query_vectors=query_vectors)
        latency_rows.extend(latency)
        recall_rows.append(recall)

    build_rows = [build_summary(b) for b in builds]
    print_table(build_table(builds, build_rows))
    print_table(latency_table(latency_rows))
    print_table(recall_table(recall_rows))
    results = {
        "sizes": args.sizes, "modes": args.modes, "build": build_rows, "latency": latency_rows, "recall": recall_rows,
        "targets": {"p95_ms": {str(size): ms for size, ms in TARGET_P95_MS.items()}, "recall_at_10": TARGET_RECALL},
        "config": {"queries": len(test_ids), "warmup": args.warmup, "k": args.k, "real_chunks": args.real_chunks,
                   "seed": args.seed, "batch": args.batch, "model_id": embedder.model_id},
        "elapsed_s": round(time.perf_counter() - started, 1), "loadavg_at_start": load_at_start,
    }
    emit_json(BENCHMARK, results, sources=sources)
    return results


if __name__ == "__main__":
    main()
