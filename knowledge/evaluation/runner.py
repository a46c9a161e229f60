"""``lorebot eval retrieval``: index a BEIR corpus through the real ingest pipeline, ask every query
through the real retrieval path, and score the rankings.

The index is a throwaway, but embedding a corpus takes minutes, so it is kept under
``<cache_root>/<key>`` where the key covers everything that shapes it: the corpus file's hash, the
embedding model and the chunking. A rerun with the same key skips ingest entirely; changed
query-time settings (fusion weight, candidates, mode) reuse it. An interrupted build resumes: the
ingestor skips the documents that already landed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knowledge.access import Audience, Scope
from knowledge.chunking import ChunkingOptions
from knowledge.errors import QuestionError
from knowledge.evaluation.beir import BeirDataset
from knowledge.evaluation.metrics import score_run
from knowledge.ingest import IngestReport, Ingestor, content_hash
from knowledge.retrieval import Retriever
from knowledge.stores.base import SearchMode
from knowledge.stores.lancedb import LanceStore
from knowledge.types import Document

Progress = Callable[[int, int], None]
# Bump when the way a corpus becomes an index changes in a way the key does not capture.
INDEX_FORMAT = 1
# Every document is public; the queries come from a channel, which sees public documents.
EVAL_AUDIENCE = Audience.for_conversation("C0LOREBOTEVAL")
RANKING_DEPTH = 100  # recall@100 needs a hundred documents per query
WARM_UP_QUERIES = 3
_COMPLETE = "complete.json"


def index_key(dataset: BeirDataset, *, model_id: str, chunking: ChunkingOptions) -> str:
    """Names the cached index: equal keys mean an identical index.

    >>> from knowledge.evaluation.beir import BeirDataset
    >>> ds = BeirDataset(name="x", split="test", corpus=(), queries={}, qrels={}, corpus_sha256="ab")
    >>> index_key(ds, model_id="m", chunking=ChunkingOptions()) == index_key(ds, model_id="m2", chunking=ChunkingOptions())
    False
    """
    material = json.dumps({
        "format": INDEX_FORMAT, "corpus": dataset.corpus_sha256, "model": model_id,
        "chunk_tokens": chunking.max_tokens, "overlap_tokens": chunking.overlap_tokens,
    }, sort_keys=True)
    return f"{dataset.name}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class EvalIndex:
    path: Path
    documents: int
    chunks: int
    cached: bool  # True when nothing had to be embedded
    seconds: float
    failed: tuple[tuple[str, str], ...] = ()


def build_eval_index(
    dataset: BeirDataset,
    *,
    cache_root: Path,
    open_store: Callable[[Path], LanceStore],
    ingestor_for: Callable[[LanceStore], Ingestor],
    model_id: str,
    chunking: ChunkingOptions,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> tuple[LanceStore, EvalIndex]:
    """The corpus's index, from the cache when a complete one with the same key is there."""
    started = time.perf_counter()
    path = Path(cache_root) / index_key(dataset, model_id=model_id, chunking=chunking)
    if rebuild and path.exists():
        shutil.rmtree(path)
    marker = _read_marker(path)
    store = open_store(path)
    if marker is not None and store.count() == marker["chunks"]:
        store.optimize()  # cheap when current; brings an index cached by an older lorebot up to date
        if progress:
            progress(len(dataset.corpus), len(dataset.corpus))
        return store, EvalIndex(path=path, documents=marker["documents"], chunks=marker["chunks"],
                                cached=True, seconds=time.perf_counter() - started)
    ingestor = ingestor_for(store)
    report = IngestReport()
    ingestor.ingest_documents(_documents(dataset, chunking, progress), report=report)
    store.optimize()
    chunks = store.count()
    documents = report.added + report.updated + report.unchanged
    (path / _COMPLETE).write_text(json.dumps({"documents": documents, "chunks": chunks}))
    return store, EvalIndex(path=path, documents=documents, chunks=chunks,
                            cached=report.chunks_embedded == 0, seconds=time.perf_counter() - started,
                            failed=tuple(report.failed))


def _read_marker(path: Path) -> dict | None:
    try:
        marker = json.loads((path / _COMPLETE).read_text())
        return marker if isinstance(marker.get("chunks"), int) else None
    except (OSError, ValueError, AttributeError):
        return None


def _documents(dataset: BeirDataset, chunking: ChunkingOptions, progress: Progress | None) -> Iterator[Document]:
    total = len(dataset.corpus)
    for done, doc in enumerate(dataset.corpus, start=1):
        yield Document(
            doc_id=doc.doc_id, title=doc.title, source=f"{dataset.name}/{doc.doc_id}", path="",
            text=doc.text, content_hash=content_hash(title=doc.title, text=doc.text, chunking=chunking),
            scope=Scope.public(),
        )
        if progress:
            progress(done, total)


@dataclass
class EvalResult:
    """Scores and query latencies of one run over a data set's judged queries."""

    metrics: dict[str, float]
    latencies_ms: list[float]
    queries: int
    unanswerable: list[str] = field(default_factory=list)  # queries the retriever refused (empty text)
    run: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def latency(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {"p50": float("nan"), "p95": float("nan")}
        p50, p95 = np.percentile(np.asarray(self.latencies_ms), [50, 95])
        return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}


def run_queries(
    retriever: Retriever,
    dataset: BeirDataset,
    *,
    mode: SearchMode,
    depth: int = RANKING_DEPTH,
    progress: Progress | None = None,
) -> EvalResult:
    """Ask every judged query as a channel would, and score the document rankings."""
    queries = list(dataset.queries.items())
    for _, text in queries[:WARM_UP_QUERIES]:  # first searches load vectors and warm caches: untimed
        _ranking(retriever, text, mode=mode, depth=depth)
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    unanswerable: list[str] = []
    for done, (query_id, text) in enumerate(queries, start=1):
        started = time.perf_counter()
        ranking = _ranking(retriever, text, mode=mode, depth=depth)
        if ranking is None:
            unanswerable.append(query_id)
        else:
            latencies.append((time.perf_counter() - started) * 1000)
            run[query_id] = ranking
        if progress:
            progress(done, len(queries))
    return EvalResult(metrics=score_run(run, dataset.qrels), latencies_ms=latencies, queries=len(queries),
                      unanswerable=unanswerable, run=run)


def _ranking(retriever: Retriever, text: str, *, mode: SearchMode, depth: int) -> list[str] | None:
    try:
        passages, _ = retriever.search(text, EVAL_AUDIENCE, k=depth, mode=mode)
    except QuestionError:
        return None
    return [p.doc_id for p in passages]
