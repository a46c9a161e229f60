"""The store interface every vector store implements (LanceDB embedded, Weaviate for scale).

A store holds chunks with their vectors and scopes. It never decides access: every search takes
an :class:`~knowledge.access.AccessFilter` (required, never optional) and applies it inside the
query, before ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Literal, Protocol

import numpy as np

from knowledge.access import AccessFilter, Scope
from knowledge.types import DocumentInfo, ScoredChunk, StoredChunk

SearchMode = Literal["hybrid", "dense", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class SearchRequest:
    """One query: its text (for BM25), its unit vector (for dense search), and how to fuse.

    ``vector`` may be a function that computes it: a store can then run its keyword search while
    the question is being embedded, and call it only when the dense search needs it.
    """

    text: str
    vector: np.ndarray | Callable[[], np.ndarray]
    k: int = 10
    mode: SearchMode = "hybrid"
    candidates: int = 50
    dense_weight: float = 0.5

    def query_vector(self) -> np.ndarray:
        return np.asarray(self.vector() if callable(self.vector) else self.vector, dtype=np.float32)


def whole_document_batches(sizes: Iterable[tuple[str, int]], *, batch_chunks: int) -> Iterator[list[str]]:
    """Document IDs grouped so a batch holds about ``batch_chunks`` chunks, never splitting a document
    (an upsert replaces *all* chunks of the documents it names).

    >>> list(whole_document_batches([("a", 3), ("b", 2), ("c", 4), ("d", 9)], batch_chunks=5))
    [['a', 'b'], ['c'], ['d']]
    """
    batch: list[str] = []
    size = 0
    for doc_id, chunks in sizes:
        if batch and size + chunks > batch_chunks:
            yield batch
            batch, size = [], 0
        batch.append(doc_id)
        size += chunks
    if batch:
        yield batch


class VectorStore(Protocol):
    """Chunks in, ranked chunks out, always through an access filter."""

    def exclusive_writer(self) -> AbstractContextManager[None]:
        """Be the only writer of the index for the ``with`` block (an ingest holds it throughout).

        Re-entrant: nested use in the same thread is a no-op, so writes inside an ingest that holds
        it go straight through. Another writer waits a bounded time, then gets an
        :class:`~knowledge.errors.IndexBusyError`. Readers never need it.
        """

    def upsert_documents(self, chunks_by_doc: dict[str, list[StoredChunk]]) -> None:
        """Replace every chunk of each given document in one atomic step.

        Readers see each document either entirely before or entirely after: never both, never neither.
        """

    def rescope_document(self, doc_id: str, scope: Scope) -> None:
        """Change a document's scope without touching its text or vectors."""

    def delete_document(self, doc_id: str) -> None:
        """Remove a document and all its chunks."""

    def list_documents(self, access: AccessFilter | None = None) -> list[DocumentInfo]:
        """Every document (only those the filter allows, when one is given)."""

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        """A document's chunks in order, with their vectors."""

    def export_documents(self, *, batch_chunks: int = 2_000) -> Iterator[dict[str, list[StoredChunk]]]:
        """Every document with its chunks and vectors, in batches of whole documents (a batch can
        go straight into another store's ``upsert_documents``)."""

    def search(self, request: SearchRequest, access: AccessFilter) -> list[ScoredChunk]:
        """The top ``request.k`` chunks for the query among those ``access`` allows."""

    def count(self) -> int:
        """How many chunks the store holds."""

    def optimize(self) -> None:
        """Bring indexes up to date after a batch of writes."""

    def close(self) -> None:
        """Release connections and files."""
