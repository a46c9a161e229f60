"""Copying an index from one store to another (embedded ⇄ Weaviate) without embedding again.

Chunks travel with their vectors and scopes, whole documents at a time (a store replaces all of a
document's chunks in one step, so a document is never split across two writes). A document the
target already holds in the same version (content hash and chunk count) is skipped, so a
migration that was interrupted picks up where it stopped. At the end both stores are listed
again and compared document by document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from knowledge.stores.base import VectorStore
from knowledge.types import DocumentInfo, StoredChunk


@dataclass
class MigrationReport:
    """What was copied, what was already there, and whether the two stores now agree."""

    documents: int = 0
    chunks: int = 0
    copied_documents: int = 0
    copied_chunks: int = 0
    skipped_documents: int = 0
    # doc_id -> what differs, after the copy (empty when the target matches the source).
    mismatches: dict[str, str] = field(default_factory=dict)
    # Documents only the target holds (kept: migration adds, it does not prune).
    extra_in_target: list[str] = field(default_factory=list)
    # The target's own count of stored chunks (Weaviate's includes versions still being replaced).
    target_chunks: int = 0

    @property
    def verified(self) -> bool:
        """Every source document is in the target, in the same version with as many chunks."""
        return not self.mismatches

    def as_dict(self) -> dict:
        return {
            "documents": self.documents, "chunks": self.chunks, "copied_documents": self.copied_documents,
            "copied_chunks": self.copied_chunks, "skipped_documents": self.skipped_documents,
            "target_chunks": self.target_chunks, "verified": self.verified,
            "mismatches": self.mismatches, "extra_in_target": self.extra_in_target,
        }


def _same_version(have: DocumentInfo | None, chunks: list[StoredChunk]) -> bool:
    return (have is not None and bool(chunks) and have.chunks == len(chunks)
            and have.content_hash == chunks[0].content_hash and have.scope == chunks[0].scope)


def migrate(source: VectorStore, target: VectorStore, *, batch_chunks: int = 2_000,
            progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Copy every document of ``source`` into ``target`` and verify; ``progress(done, total)`` in chunks."""
    listed = source.list_documents()
    report = MigrationReport(documents=len(listed), chunks=sum(d.chunks for d in listed))
    already = {d.doc_id: d for d in target.list_documents()}
    done = 0
    for batch in source.export_documents(batch_chunks=batch_chunks):
        todo = {doc_id: chunks for doc_id, chunks in batch.items() if not _same_version(already.get(doc_id), chunks)}
        report.skipped_documents += len(batch) - len(todo)
        if todo:
            target.upsert_documents(todo)
            report.copied_documents += len(todo)
            report.copied_chunks += sum(len(c) for c in todo.values())
        done += sum(len(c) for c in batch.values())
        if progress:
            progress(done, report.chunks)
    target.optimize()
    report.mismatches, report.extra_in_target = compare_listings(listed, target.list_documents())
    report.target_chunks = target.count()
    return report


def compare_listings(source_docs: list[DocumentInfo],
                     target_docs: list[DocumentInfo]) -> tuple[dict[str, str], list[str]]:
    """``({doc_id: what differs}, [documents only the target holds])`` of two stores' listings."""
    there = {d.doc_id: d for d in target_docs}
    mismatches = {}
    for doc in source_docs:
        copy = there.get(doc.doc_id)
        if copy is None:
            mismatches[doc.doc_id] = "missing from the target"
        elif copy.chunks != doc.chunks:
            mismatches[doc.doc_id] = f"{copy.chunks} chunks in the target, {doc.chunks} in the source"
        elif copy.content_hash != doc.content_hash or copy.scope != doc.scope:
            mismatches[doc.doc_id] = "a different version (content or scope) in the target"
    known = {d.doc_id for d in source_docs}
    return mismatches, sorted(d for d in there if d not in known)
