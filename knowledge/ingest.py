"""Files in, chunks with vectors in the store: incremental, atomic per document, and never all-or-nothing.

- An unchanged document costs no embedding work (same content hash, same scope: skipped).
- Same content under a new scope is re-scoped in place, without re-embedding.
- A scope is never widened silently: an ingest that would show an indexed document to a
  conversation that could not see it is refused whole, before any write, unless ``allow_widen``.
- A changed document replaces its chunks in one store commit; chunks whose text did not change
  keep their vectors.
- A file that fails to load is reported and skipped; what was indexed from it before stays.
  A file emptied on purpose (nothing but whitespace) removes its document.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.access import Scope
from knowledge.chunking import ChunkingOptions, chunk_document
from knowledge.embedding import Embedder
from knowledge.errors import EmptyFileError, LoadError, LorebotError, WideningRefused
from knowledge.loaders import discover, load_file
from knowledge.stores.base import VectorStore
from knowledge.types import Chunk, Document, DocumentInfo, StoredChunk

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
# Enough chunks per store commit to keep the encoder's batches full and commits few.
BATCH_CHUNKS = 512


@dataclass
class IngestReport:
    """What an ingest did, for the one-line summary and ``--json``."""

    added: int = 0
    updated: int = 0
    rescoped: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rescoped = f" ({self.rescoped} re-scoped)" if self.rescoped else ""
        return (
            f"{self.added} added, {self.updated} updated{rescoped}, {self.unchanged} unchanged, "
            f"{self.removed} removed, {len(self.failed)} failed; {self.chunks_written} chunks written "
            f"({self.chunks_embedded} embedded) in {self.seconds:.1f}s"
        )

    def as_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "rescoped": self.rescoped,
            "unchanged": self.unchanged, "removed": self.removed,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "chunks_written": self.chunks_written, "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
        }


def document_id(path: Path) -> str:
    """A document's identity is where it lives: the same file re-ingested replaces itself."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:32]


def content_hash(*, title: str, text: str, chunking: ChunkingOptions) -> str:
    """Changes when the text, the title, or the way it is chunked changes."""
    key = f"{chunking.max_tokens}/{chunking.overlap_tokens}\x00{title}\x00{text}"
    return hashlib.sha256(key.encode()).hexdigest()


def embedding_hash(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\x00{text}".encode()).hexdigest()[:32]


@dataclass
class Ingestor:
    """Runs ingests against one store with one embedder."""

    store: VectorStore
    embedder: Embedder
    chunking: ChunkingOptions = field(default_factory=ChunkingOptions)
    batch_chunks: int = BATCH_CHUNKS
    # Called with the chunks of each committed batch (the bot embeds their sentences for quoting).
    # Work done for the answers, not the index: if it fails, the ingest goes on and says so in the log.
    after_write: Callable[[list[StoredChunk]], object] | None = None

    def ingest_paths(
        self,
        paths: list[Path],
        *,
        scope: Scope,
        source_url: str | None = None,
        prune: bool = False,
        progress: ProgressCallback | None = None,
        allow_widen: bool = False,
    ) -> IngestReport:
        """Ingest files and folders (recursively) under one scope.

        A path given here is resolved (a symbolic link names its target); inside a folder, links
        that lead out of it are skipped. Raises :class:`WideningRefused` before anything is
        written when an indexed document would become visible to a conversation that could not
        see it, unless ``allow_widen``.
        """
        started = time.perf_counter()
        report = IngestReport()
        with self._exclusive():
            roots = _resolve_roots(paths, report)
            found = discover(roots)
            report.skipped += [(str(p), reason) for p, reason in found.skipped]
            files = _with_real_paths(found.files, report)
            known = self._known()
            if not allow_widen:
                # Decided on identity (the real path), before a file is read: nothing half-done.
                _refuse_widening(((document_id(real), str(real), scope) for _, real in files), known)
            documents = self._load(files, roots, scope=scope, source_url=source_url, known=known,
                                   report=report, progress=progress)
            self._ingest(documents, known, report)
            if prune:
                report.removed += self._prune(roots)
            self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_documents(
        self,
        documents: Iterable[Document],
        *,
        report: IngestReport | None = None,
        allow_widen: bool = False,
    ) -> IngestReport:
        """Write already-loaded documents; the building block for files, Slack history and benchmarks.

        Raises :class:`WideningRefused` before anything is written when a document would become
        visible to a conversation that could not see it in the index, unless ``allow_widen``.
        """
        report = report or IngestReport()
        with self._exclusive():
            known = self._known()
            if not allow_widen and any(not info.scope.is_public for info in known.values()):
                # Every document must be seen before the first write; an index holding only public
                # documents cannot be widened, so a large corpus into it still streams.
                documents = list(documents)
                _refuse_widening(((d.doc_id, d.path or d.source, d.scope) for d in documents), known)
            self._ingest(documents, known, report)
        return report

    def _known(self) -> dict[str, DocumentInfo]:
        return {d.doc_id: d for d in self.store.list_documents()}

    def _exclusive(self) -> AbstractContextManager[None]:
        """The store's write lock for the whole ingest: the widening check and the writes it allowed
        see the same index. Re-entrant in a thread, so each write inside takes it again for free."""
        return self.store.exclusive_writer()

    def _ingest(self, documents: Iterable[Document], known: dict[str, DocumentInfo], report: IngestReport) -> None:
        batch: list[tuple[Document, list[Chunk], bool]] = []
        pending_chunks = 0
        for doc in documents:
            previous = known.get(doc.doc_id)
            if previous is not None and previous.content_hash == doc.content_hash and previous.source == doc.source:
                self._keep_or_rescope(doc, previous, report)
            else:
                chunks = chunk_document(doc, self.chunking)
                if not chunks:  # headings only: nothing a question could be answered from
                    self._reject_empty(doc, previous, report)
                    continue
                batch.append((doc, chunks, previous is None))
                pending_chunks += len(chunks)
            if pending_chunks >= self.batch_chunks:
                self._write(batch, known, report)
                batch, pending_chunks = [], 0
        self._write(batch, known, report)

    def _load(self, files, roots, *, scope, source_url, known, report, progress) -> Iterable[Document]:
        """Documents from files, in order; progress counts every file, failed ones too."""
        for done, (path, resolved) in enumerate(files, start=1):
            try:
                loaded = load_file(path)
            except EmptyFileError as e:
                self._remove_emptied(path, resolved, e.reason, known, report)
                continue
            except LoadError as e:
                report.failed.append((str(path), e.reason))
                log.warning("skipped %s: %s", path, e.reason)
                continue
            finally:
                if progress:
                    progress(done, len(files))
            yield Document(
                doc_id=document_id(resolved),
                title=loaded.title,
                source=_source_for(resolved, roots, source_url),
                path=str(resolved),
                text=loaded.text,
                content_hash=content_hash(title=loaded.title, text=loaded.text, chunking=self.chunking),
                scope=scope,
            )

    def _remove_emptied(self, path: Path, resolved: Path, reason: str, known: dict, report: IngestReport) -> None:
        """An emptied file says its document is gone: remove it (a new empty file is just skipped)."""
        doc_id = document_id(resolved)
        if known.pop(doc_id, None) is None:
            report.skipped.append((str(path), reason))
            return
        self.store.delete_document(doc_id)
        report.removed += 1

    def _reject_empty(self, doc: Document, previous: DocumentInfo | None, report: IngestReport) -> None:
        report.failed.append((doc.path or doc.source, "no text to index (headings only)"))
        if previous is not None:  # its old text is no longer in the file: do not answer from it
            self.store.delete_document(doc.doc_id)
            report.removed += 1

    def _keep_or_rescope(self, doc: Document, previous: DocumentInfo, report: IngestReport) -> None:
        if previous.scope == doc.scope:
            report.unchanged += 1
            return
        self.store.rescope_document(doc.doc_id, doc.scope)
        report.updated += 1
        report.rescoped += 1

    def _write(self, batch: list[tuple[Document, list[Chunk], bool]], known: dict, report: IngestReport) -> None:
        """Embed what is new and write the batch in one store commit; count only what landed."""
        if not batch:
            return
        reusable = self._reusable_vectors([doc.doc_id for doc, _, _ in batch if doc.doc_id in known])
        model_id = self.embedder.model_id
        hashes = {c.chunk_id: embedding_hash(model_id, c.embedding_text) for _, chunks, _ in batch for c in chunks}
        to_embed = [c for _, chunks, _ in batch for c in chunks if hashes[c.chunk_id] not in reusable]
        vectors = dict(zip((c.chunk_id for c in to_embed), self.embedder.encode([c.embedding_text for c in to_embed])))
        rows: dict[str, list[StoredChunk]] = {}
        for doc, chunks, _ in batch:
            rows[doc.doc_id] = [
                _stored(doc, c, hashes[c.chunk_id], vectors.get(c.chunk_id, reusable.get(hashes[c.chunk_id])))
                for c in chunks
            ]
        try:
            self.store.upsert_documents(rows)
        except LorebotError as e:
            for doc, _, _ in batch:
                report.failed.append((doc.path or doc.source, str(e)))
            return
        self._after_write([c for chunks in rows.values() for c in chunks])
        new = sum(1 for _, _, is_new in batch if is_new)
        report.added += new
        report.updated += len(batch) - new
        report.chunks_written += sum(len(c) for c in rows.values())
        report.chunks_embedded += len(to_embed)

    def _after_write(self, chunks: list[StoredChunk]) -> None:
        if self.after_write is None:
            return
        try:
            self.after_write(chunks)
        except Exception:  # the chunks are written; what follows them is an extra
            log.warning("work after writing %d chunks failed; the chunks are indexed", len(chunks), exc_info=True)

    def _reusable_vectors(self, doc_ids: list[str]) -> dict[str, object]:
        """Vectors of the chunks these documents have now, by embedding hash: unchanged text, no encoding."""
        return {c.embedding_hash: c.vector for doc_id in doc_ids for c in self.store.chunks_of(doc_id) if c.vector is not None}

    def _prune(self, roots: list[Path]) -> int:
        # A root that is gone (a renamed folder, an unmounted drive) is reported as failed; its
        # documents are kept rather than all deleted on what may be a typo.
        roots = [root for root in roots if root.exists()]
        removed = 0
        for doc in self.store.list_documents():
            if doc.path and _is_under(Path(doc.path), roots) and not os.path.exists(doc.path):
                self.store.delete_document(doc.doc_id)
                removed += 1
        return removed


def widens(old: Scope, new: Scope) -> bool:
    """True when ``new`` shows a document to a conversation that ``old`` kept it from.

    >>> widens(Scope.channels(["C0ENG"]), Scope.public()), widens(Scope.public(), Scope.channels(["C0ENG"]))
    (True, False)
    >>> widens(Scope.channels(["C0ENG"]), Scope.channels(["C0OPS"]))  # C0OPS gains it
    True
    >>> widens(Scope.channels(["C0ENG", "C0OPS"]), Scope.channels(["C0OPS"]))
    False
    """
    if old.is_public:
        return False
    return new.is_public or not new.labels <= old.labels


def _refuse_widening(candidates: Iterable[tuple[str, str, Scope]], known: dict[str, DocumentInfo]) -> None:
    """Raise :class:`WideningRefused` listing every (doc_id, name, new scope) that widens a known scope."""
    widened, listed = [], set()
    for doc_id, name, scope in candidates:
        previous = known.get(doc_id)
        if previous is not None and doc_id not in listed and widens(previous.scope, scope):
            listed.add(doc_id)
            widened.append((name, previous.scope, scope))
    if widened:
        raise WideningRefused(widened)


def _resolve_roots(paths: list[Path], report: IngestReport) -> list[Path]:
    """The paths as given, resolved: a link named here is the user's choice of its target.
    One that cannot be resolved (a link loop, a name too long) is reported; the rest go on."""
    roots = []
    for path in paths:
        try:
            roots.append(Path(path).expanduser().resolve())
        except RuntimeError:  # Python 3.11 reports a link loop this way
            report.failed.append((str(path), "symbolic link loop"))
        except OSError as e:
            report.failed.append((str(path), f"cannot read the path ({e.strerror or e})"))
    return roots


def _with_real_paths(files: Iterable[Path], report: IngestReport) -> list[tuple[Path, Path]]:
    """Each file with its real path, which is the document's identity (a link and its target are one)."""
    pairs = []
    for path in files:
        try:
            pairs.append((path, Path(os.path.realpath(path))))
        except (OSError, ValueError) as e:
            report.failed.append((str(path), f"cannot read the path ({e})"))
    return pairs


def _stored(doc: Document, chunk: Chunk, hash_: str, vector) -> StoredChunk:
    return StoredChunk(
        chunk_id=chunk.chunk_id, doc_id=doc.doc_id, position=chunk.position, title=chunk.title,
        heading_path=chunk.heading_path, text=chunk.text, source=doc.source, path=doc.path,
        scope=doc.scope, content_hash=doc.content_hash, embedding_hash=hash_, vector=vector,
    )


def _source_for(path: Path, roots: list[Path], source_url: str | None) -> str:
    """The path itself, or ``--source-url`` (joined with the path inside a folder that was given)."""
    if not source_url:
        return str(path)
    for root in roots:
        if root.is_dir() and _is_under(path, [root]):
            return source_url.rstrip("/") + "/" + path.relative_to(root).as_posix()
    return source_url


def _is_under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
