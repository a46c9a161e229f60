"""Vectors of quotable units (sentences, list items, table rows), embedded once and remembered.

The extractive generator scores every unit of the top passages by its similarity to the question.
Embedding forty short units takes the CPU 100-300 ms, far more than choosing among them; so the
units of every chunk are embedded when the chunk is ingested (:meth:`UnitVectors.prepare`, called
by the ingestor after each write) and kept in a small SQLite file beside the index. Answering then
reads vectors by key; a unit never seen before (a passage joined from two excerpts gives its units
a different heading) is embedded then and remembered.

Keys are the embedding hash of the model ID and the unit's scored text, so a different model never
reads another's vectors, and the same sentence in two documents is embedded once. Entries are not
removed with their document at once (a unit may be shared): :meth:`UnitVectors.prune`, the
scheduler's daily ``unit-vectors`` job, forgets those of text no longer indexed — a hash and a
vector of a deleted message would still let someone who reads the file confirm what it said.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bot.generation.extractive import piece_units
from knowledge.embedding import Embedder
from knowledge.ingest import embedding_hash
from knowledge.retrieval import passage_pieces
from knowledge.types import PassagePiece, StoredChunk

log = logging.getLogger(__name__)

# Vectors kept in memory besides the file: a busy bot's recent passages (1.5 KB each at 384 floats).
MEMORY_ENTRIES = 50_000


class UnitVectors:
    """Unit vectors by text: from memory, then the file (when there is one), else embedded now.

    Safe to share between threads; several processes may share the file (SQLite, WAL).
    """

    def __init__(self, embedder: Embedder, path: Path | None = None, *, memory_entries: int = MEMORY_ENTRIES):
        self.embedder = embedder
        self.path = path
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def vectors(self, texts: list[str]) -> np.ndarray:
        """One normalized vector per text, in order (shape ``(len(texts), dimension)``)."""
        keys = [self._key(t) for t in texts]
        found = self._recall(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            encoded = self.embedder.encode([texts[i] for i in missing])
            new = {keys[i]: np.asarray(v, dtype=np.float32) for i, v in zip(missing, encoded)}
            self._remember(new, persist=True)
            found.update(new)
        if not keys:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def prepare(self, chunks: Iterable[StoredChunk]) -> int:
        """Embed the units of these chunks that are not known yet; returns how many were embedded.

        Each chunk is read as a passage shows it: alone, and after the chunk before it (without the
        overlap the two share). See ``bot.generation.extractive.passage_units``.
        """
        texts = {}
        for piece in _pieces_a_passage_may_show(chunks):
            for unit in piece_units(piece.heading_path, piece.text):
                texts.setdefault(self._key(unit.scored), unit.scored)
        known = self._recall(list(texts))
        todo = [(k, t) for k, t in texts.items() if k not in known]
        if not todo:
            return 0
        encoded = self.embedder.encode([t for _, t in todo])
        self._remember({k: np.asarray(v, dtype=np.float32) for (k, _), v in zip(todo, encoded)}, persist=True)
        return len(todo)

    def prune(self, documents: Iterable[dict[str, list[StoredChunk]]]) -> int:
        """Forget the vectors of units that no indexed chunk holds any more (a deleted message, an
        edited page's old sentences). ``documents``: the index's chunks, whole documents per batch
        (``VectorStore.export_documents``). Keys stored after this began are kept, so a concurrent
        ingest loses nothing. Returns how many were forgotten."""
        with self._lock:
            db = self._connection()
            try:
                before = {key for (key,) in db.execute("SELECT key FROM unit_vectors")} if db else set(self._memory)
            except sqlite3.Error as e:
                log.warning("could not read unit vectors in %s to prune them: %s", self.path, e)
                return 0
        live = set()
        for batch in documents:
            for piece in _pieces_a_passage_may_show(chunk for chunks in batch.values() for chunk in chunks):
                live.update(self._key(unit.scored) for unit in piece_units(piece.heading_path, piece.text))
        stale = sorted(before - live)
        with self._lock:
            for key in stale:
                self._memory.pop(key, None)
            db = self._connection()
            if db is not None and stale:
                try:
                    with db:
                        for start in range(0, len(stale), 500):  # SQLite's limit on bound parameters
                            part = stale[start:start + 500]
                            db.execute(f"DELETE FROM unit_vectors WHERE key IN ({','.join('?' * len(part))})", part)
                except sqlite3.Error as e:
                    log.warning("could not prune unit vectors in %s: %s", self.path, e)
                    return 0
                # What was deleted must not linger in the write-ahead log either (secure_delete,
                # set on the connection, zeroes the freed pages of the file itself).
                try:
                    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error as e:
                    busy = e
                if busy:  # another reader holds the log: the next prune (or checkpoint) clears it
                    log.warning("unit vectors pruned in %s, but its write-ahead log still holds them: %s",
                                self.path, "a reader was busy" if busy == 1 else busy)
        return len(stale)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _key(self, text: str) -> str:
        return embedding_hash(self.embedder.model_id, text)

    def _recall(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for k in keys:
                v = self._memory.get(k)
                if v is not None:
                    self._memory.move_to_end(k)
                    found[k] = v
            rest = [k for k in keys if k not in found]
            db = self._connection() if rest else None
            if db is not None:
                for start in range(0, len(rest), 500):  # SQLite's limit on bound parameters
                    part = rest[start:start + 500]
                    marks = ",".join("?" * len(part))
                    for key, blob in db.execute(f"SELECT key, vector FROM unit_vectors WHERE key IN ({marks})", part):
                        found[key] = np.frombuffer(blob, dtype=np.float32)
        from_file = {k: v for k, v in found.items() if k in rest}
        if from_file:
            self._remember(from_file, persist=False)
        return found

    def _remember(self, vectors: dict[str, np.ndarray], *, persist: bool) -> None:
        with self._lock:
            for k, v in vectors.items():
                self._memory[k] = v
                self._memory.move_to_end(k)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)
            db = self._connection() if persist else None
            if db is None:
                return
            try:
                with db:
                    db.executemany("INSERT OR IGNORE INTO unit_vectors (key, vector) VALUES (?, ?)",
                                   [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()])
            except sqlite3.Error as e:  # a full disk or a read-only file slows answers; it never stops one
                log.warning("could not remember unit vectors in %s: %s", self.path, e)

    def _connection(self) -> sqlite3.Connection | None:
        """The file, opened on first use (caller holds the lock); None when there is none or it cannot be."""
        if self.path is None:
            return None
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA secure_delete=ON")  # pruned vectors leave no bytes behind
                db.execute("CREATE TABLE IF NOT EXISTS unit_vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
                db.commit()
            except (sqlite3.Error, OSError) as e:
                log.warning("unit vectors are not kept on disk (%s: %s); they are embedded as needed", self.path, e)
                self.path = None
                return None
            self._db = db
        return self._db


def _pieces_a_passage_may_show(chunks: Iterable[StoredChunk]) -> list[PassagePiece]:
    """Every chunk whole, and after the chunk before it in its document (overlap removed)."""
    by_document: dict[str, list[StoredChunk]] = {}
    for chunk in chunks:
        by_document.setdefault(chunk.doc_id, []).append(chunk)
    pieces = []
    for doc_chunks in by_document.values():
        doc_chunks.sort(key=lambda c: c.position)
        pieces += [PassagePiece(c.heading_path, c.text) for c in doc_chunks]
        pieces += passage_pieces(doc_chunks)[1:]
    return pieces
