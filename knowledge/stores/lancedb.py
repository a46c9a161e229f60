"""The embedded store: LanceDB tables under ``$LOREBOT_DATA_DIR/index``.

``chunks`` holds the chunks. Its indexes: a full-text (BM25) index on the chunk's title, headings
and text; a label-list index on the scope, which serves the access pre-filter; a BTree on the chunk
ID for upserts; and an ANN vector index once the table is large enough that exact search gets slow.

``documents`` holds each document's whole text, rebuilt from its chunks, and its scope, with a BM25
index of its own. It is only a ranking signal: a chunk's keyword score is its own BM25 score plus
its document's (see ``DOCUMENT_MATCH_WEIGHT``). The document query runs beside the chunk query,
under the same access filter, and its scores only ever add to chunks the chunk query found, so it
can reorder what an audience may see but never add to it. Should the table be missing or fail,
keyword search goes on with chunk scores alone, and ``optimize`` rebuilds it. Each row carries a
``marker`` of its document's content (the chunks' content hashes); ``optimize`` compares the IDs,
scopes and markers with the chunks table and rewrites the rows that are missing, stale or orphaned,
as a process killed between a document's chunk write and its documents write leaves them.

Writers take the index's write lock (:mod:`knowledge.stores.write_lock`), so two processes (the
scheduler's re-ingest and an admin's ``lorebot ingest``) never write at once; readers need none.

Below that size (``ann_min_rows``) the dense half of a search is exact. A long-running process
(``vectors_in_memory``: the bot) answers it from an in-memory copy of the table
(:mod:`knowledge.stores.memory_vectors`): a few milliseconds at 100k chunks, where LanceDB's own
flat search over a pre-filtered table takes tens; a one-shot command lets LanceDB search, rather
than load the whole table for one question. Such a process also keeps the texts' BM25 postings in
memory (:mod:`knowledge.stores.memory_keywords`, scored as LanceDB scores), built in the
background whenever the tables change; until they are ready, LanceDB's full-text index answers.
Above the threshold LanceDB's ANN index answers, except for audiences that see only a small part
of the table, which are searched exactly.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfHnswSq, LabelList

from knowledge.access import PUBLIC, AccessFilter, Audience, Scope, filter_for
from knowledge.chunking import document_text
from knowledge.errors import StoreError
from knowledge.fusion import fuse
from knowledge.stores.base import SearchRequest, whole_document_batches
from knowledge.stores.memory_keywords import KeywordSnapshot
from knowledge.stores.memory_vectors import VectorSnapshot
from knowledge.stores.write_lock import DEFAULT_TIMEOUT_S, IndexWriteLock
from knowledge.types import DocumentInfo, ScoredChunk, StoredChunk

log = logging.getLogger(__name__)

TABLE = "chunks"
DOCUMENTS_TABLE = "documents"
# A chunk matches as itself and as part of its document: BM25 over a 128-token chunk misses the
# words its neighbours hold, and BM25 over the whole document cannot say which part answers. The
# two scores are added with equal weight, the choice that needs no tuning. On BEIR SciFact it raised
# BM25 nDCG@10 from 0.683 to 0.696 (0.685 → 0.712 and 0.681 → 0.684 on the two fixed halves of the
# queries) and hybrid from 0.734 to 0.739; weights of 0.5, 1.5 and 2 were worse on both halves.
DOCUMENT_MATCH_WEIGHT = 1.0
# How often a store without a documents table looks whether another process (an ingest) made one.
_DOCUMENTS_RECHECK_S = 5.0
# The in-memory keyword postings are rebuilt once the tables have stayed at one version this long:
# an ingest writes batch after batch, and each rebuild reads and analyzes every text (about 10 s of
# one core at 100k chunks). LanceDB's full-text index answers meanwhile, with the same scores.
KEYWORD_SETTLE_S = 5.0
_TEXT_BATCH_ROWS = 8192
_FTS = dict(language="English", stem=True, remove_stop_words=True)
_DOCUMENTS_SCHEMA = pa.schema([("doc_id", pa.string()), ("scope", pa.list_(pa.string())), ("search_text", pa.string()),
                               ("marker", pa.string())])
# How many rows (documents, or their chunks) optimize() repairs per statement: IDs go into an IN list.
_REPAIR_BATCH = 500
_MODEL_KEY = b"lorebot.embedding_model"
_ANN_SETTINGS = "ann.json"
# An audience that sees fewer rows than this is searched exactly: cheap at that size, and an ANN
# index probing a few partitions could miss a small channel's chunks entirely.
EXACT_SEARCH_MAX_ROWS = 20_000
_NPROBES_LADDER = (2, 4, 8, 16, 32, 64, 128, 256, 512)
TARGET_ANN_RECALL = 0.95
# Tuning queries are stored vectors plus noise of this size per dimension: about 0.6 cosine from the
# chunk they came from, as far as a question usually is from the passage that answers it. (With
# 0.03, 0.86 cosine, the 1M-chunk benchmark's index settled on 16 probes and real questions got
# recall 0.83; with 0.07 it settles on 256, and they get 0.97.)
_TUNING_NOISE = 0.07
# Those queries are hard enough that HNSW's own approximation keeps even a probe of every partition
# below the target on some indexes; probes are then added until recall is this close to that ceiling.
_CEILING_TOLERANCE = 0.02
# Partitions of about this many rows: each is an HNSW graph, so large partitions cost little per
# probe, and few partitions need few probes. (sqrt(rows) partitions, 1,000 at 1M, needed 256 probes
# and twice the time for the same recall.)
ROWS_PER_PARTITION = 32_768

_META_COLUMNS = ["chunk_id", "doc_id", "position", "title", "heading_path", "text", "source", "path",
                 "scope", "content_hash", "embedding_hash"]


def _schema(dimension: int, model_id: str) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("position", pa.int32()),
            ("title", pa.string()),
            ("heading_path", pa.list_(pa.string())),
            ("text", pa.string()),
            ("search_text", pa.string()),
            ("source", pa.string()),
            ("path", pa.string()),
            ("scope", pa.list_(pa.string())),
            ("content_hash", pa.string()),
            ("embedding_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
        ],
        metadata={_MODEL_KEY: model_id.encode()},
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def keyword_query(text: str) -> str:
    """The question as plain words for BM25: the FTS parser would read quotes as phrases, etc.

    >>> keyword_query('What is "on-call" pay?')
    'What is on call pay'
    """
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


class LanceStore:
    """The embedded LanceDB store. Implements :class:`knowledge.stores.base.VectorStore`."""

    def __init__(
        self,
        path: Path,
        *,
        dimension: int,
        model_id: str,
        ann_min_rows: int = 250_000,
        rows_per_partition: int = ROWS_PER_PARTITION,
        exact_search_max_rows: int = EXACT_SEARCH_MAX_ROWS,
        vectors_in_memory: bool = False,
        keyword_settle_s: float | None = KEYWORD_SETTLE_S,
        write_lock_timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        self.path = Path(path)
        self.exact_search_max_rows = exact_search_max_rows
        self.dimension = dimension
        self.model_id = model_id
        self.ann_min_rows = ann_min_rows
        self.rows_per_partition = rows_per_partition
        self.vectors_in_memory = vectors_in_memory
        self.keyword_settle_s = keyword_settle_s
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_lock = IndexWriteLock(self.path, timeout_s=write_lock_timeout_s)
            # Another process (an ingest) may write while this one serves: look for new versions often.
            self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(seconds=2))
            self._table = self._open_existing()
            self._documents = self._open_documents()
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot open the index at {self.path}: {e}") from e
        self._count_cache: dict[tuple[int, str], int] = {}
        # Keyword searches run here beside the dense search; several can be in flight when the bot
        # answers questions concurrently.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lance-bm25")
        self._ann_settings: tuple[float, int | None] = (-1.0, None)
        self._snapshot: VectorSnapshot | None = None
        self._snapshot_lock = threading.Lock()
        self._documents_checked = time.monotonic()
        self._table_checked = time.monotonic()
        self._documents_failure_logged = False
        self._keywords: KeywordSnapshot | None = None
        self._keywords_lock = threading.Lock()
        self._keywords_build_lock = threading.Lock()
        self._keywords_pending = False  # a thread waits for the writes to settle, then builds
        self._keywords_skip: tuple | None = None  # versions not to build for: too big, or it failed

    # -- opening -------------------------------------------------------------------------------

    def _open_existing(self):
        if TABLE not in self._table_names():
            return None
        table = self._db.open_table(TABLE)
        built_with = (table.schema.metadata or {}).get(_MODEL_KEY, b"").decode()
        if built_with != self.model_id:
            raise StoreError(
                f"the index at {self.path} was built with embedding model '{built_with}', but "
                f"'{self.model_id}' is configured: set LOREBOT_EMBEDDING_MODEL back, or delete the index "
                "and ingest again"
            )
        return table

    def _readable_table(self):
        """The chunks table for a read. A process that opened an empty index (the bot, started
        before the first ingest) looks for it again now and then, or it would answer nothing for good."""
        if self._table is None and time.monotonic() - self._table_checked > _DOCUMENTS_RECHECK_S:
            self._table_checked = time.monotonic()
            self._table = self._open_existing()
        return self._table

    def _open_documents(self):
        return self._db.open_table(DOCUMENTS_TABLE) if DOCUMENTS_TABLE in self._table_names() else None

    def _documents_table(self):
        """The documents table, looked for again now and then while it is missing."""
        if self._documents is None and time.monotonic() - self._documents_checked > _DOCUMENTS_RECHECK_S:
            self._documents_checked = time.monotonic()
            try:
                self._documents = self._open_documents()
            except Exception as e:  # a ranking signal: never worth failing a search for
                log.debug("documents table not opened: %s", e)
        return self._documents

    def _documents_to_write(self):
        """The documents table for a write: a writer must not miss one another process made since
        this store opened (it would leave that document's text or scope stale there)."""
        if self._documents is None:
            self._documents = self._open_documents()
        return self._documents

    def _table_names(self) -> list[str]:
        listed = self._db.list_tables()
        return list(getattr(listed, "tables", listed))

    def _ensure_table(self):
        """The chunks table, created unless another process made it since this store opened
        (called under the write lock)."""
        self._refresh_table()
        if self._table is None:
            # exist_ok: a writer that takes no lock (an older lorebot) may create it meanwhile.
            self._db.create_table(TABLE, schema=_schema(self.dimension, self.model_id), exist_ok=True)
            self._table = self._open_existing()
        return self._table

    def _refresh_table(self) -> None:
        """Open the chunks table if another process created it since this store opened: a write
        must not skip a table it cannot see (a delete or a rescope would silently do nothing)."""
        if self._table is None:
            self._table = self._open_existing()

    # -- writing -------------------------------------------------------------------------------

    def exclusive_writer(self) -> AbstractContextManager[None]:
        """Hold the index's write lock for the ``with`` block (see :mod:`knowledge.stores.write_lock`)."""
        return self._write_lock.held()

    def upsert_documents(self, chunks_by_doc: dict[str, list[StoredChunk]]) -> None:
        if not chunks_by_doc:
            return
        with self.exclusive_writer():
            self._upsert(chunks_by_doc)

    def _upsert(self, chunks_by_doc: dict[str, list[StoredChunk]]) -> None:
        table = self._ensure_table()
        data = self._to_arrow([c for chunks in chunks_by_doc.values() for c in chunks])
        doc_list = ", ".join(_quote(d) for d in chunks_by_doc)
        try:
            # One merge is one commit: each document's old chunks go and its new ones arrive together.
            (
                table.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(f"doc_id IN ({doc_list})")
                .execute(data)
            )
        except Exception as e:
            raise StoreError(f"writing {len(chunks_by_doc)} documents to the index failed: {e}") from e
        self._write_document_texts(chunks_by_doc)

    def _write_document_texts(self, chunks_by_doc: dict[str, list[StoredChunk]]) -> None:
        """Each document's whole text into the documents table (after its chunks: it only ranks them).

        If this fails the table is dropped rather than left stale; searches go on without it until
        ``optimize`` rebuilds it from the chunks.
        """
        data = _documents_arrow(chunks_by_doc)
        try:
            if self._documents_to_write() is None:
                if self._table.count_rows() > sum(map(len, chunks_by_doc.values())):
                    return  # the index holds chunks from before: optimize() builds the table from all
                self._documents = self._db.create_table(DOCUMENTS_TABLE, schema=_DOCUMENTS_SCHEMA, exist_ok=True)
            self._documents.merge_insert("doc_id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        except Exception as e:
            log.warning("document-level BM25 is off until the next optimize: writing document texts failed: %s", e)
            self._drop_documents()

    def _drop_documents(self) -> None:
        self._documents = None
        try:
            if DOCUMENTS_TABLE in self._table_names():
                self._db.drop_table(DOCUMENTS_TABLE)
        except Exception as e:
            log.warning("could not drop the documents table: %s", e)

    def rescope_document(self, doc_id: str, scope: Scope) -> None:
        with self.exclusive_writer():
            self._refresh_table()
            if self._table is None:
                return
            self._table.update(where=f"doc_id = {_quote(doc_id)}", values={"scope": scope.as_list()})
            if self._documents_to_write() is not None:
                self._documents.update(where=f"doc_id = {_quote(doc_id)}", values={"scope": scope.as_list()})

    def delete_document(self, doc_id: str) -> None:
        with self.exclusive_writer():
            self._refresh_table()
            if self._table is not None:
                self._table.delete(f"doc_id = {_quote(doc_id)}")
            if self._documents_to_write() is not None:
                self._documents.delete(f"doc_id = {_quote(doc_id)}")

    def _to_arrow(self, chunks: list[StoredChunk]) -> pa.Table:
        schema = _schema(self.dimension, self.model_id)
        columns = {name: [] for name in schema.names}
        for c in chunks:
            if c.vector is None or len(c.vector) != self.dimension:
                raise StoreError(f"chunk {c.chunk_id} has no {self.dimension}-dimensional vector")
            for name in _META_COLUMNS:
                value = getattr(c, name)
                columns[name].append(list(value) if name == "heading_path" else value)
            columns["scope"][-1] = c.scope.as_list()
            columns["search_text"].append(_search_text(c))
            columns["vector"].append(np.asarray(c.vector, dtype=np.float32))
        return pa.Table.from_pydict(columns, schema=schema)

    # -- indexes -------------------------------------------------------------------------------

    def optimize(self) -> None:
        with self.exclusive_writer():
            self._refresh_table()
            if self._table is not None:
                self._optimize(self._table)

    def _optimize(self, table) -> None:
        existing = {ix.name: ix for ix in table.list_indices()}
        if "search_text_idx" not in existing:
            table.create_index("search_text", config=FTS(**_FTS))
        if "scope_idx" not in existing:
            table.create_index("scope", config=LabelList())
        if "chunk_id_idx" not in existing:
            table.create_index("chunk_id", config=BTree())
        # Compaction plus incremental index updates for the rows written since the last call.
        table.optimize()
        rows = table.count_rows()
        if "vector_idx" not in existing and rows >= self.ann_min_rows:
            self._build_ann_index(rows)
        self._optimize_documents()

    def _optimize_documents(self) -> None:
        """Build the documents table from the chunks if it is missing (an index from before it
        existed, or a failed write), else repair the rows an interrupted write left wrong; then
        bring its indexes up to date."""
        if self._documents_to_write() is not None and self._documents.schema != _DOCUMENTS_SCHEMA:
            log.info("the documents table has another layout: rebuilding it")
            self._drop_documents()
        if self._documents is None:
            log.info("building the document-level keyword index from the chunks")
            documents = self._db.create_table(DOCUMENTS_TABLE, schema=_DOCUMENTS_SCHEMA, mode="overwrite")
            for batch in self._document_batches(with_vectors=False):
                documents.add(_documents_arrow(batch))
            self._documents = documents
        else:
            self._repair_documents()
        existing = {ix.name for ix in self._documents.list_indices()}
        if "search_text_idx" not in existing:
            self._documents.create_index("search_text", config=FTS(**_FTS))
        if "doc_id_idx" not in existing:
            self._documents.create_index("doc_id", config=BTree())
        if "scope_idx" not in existing:
            self._documents.create_index("scope", config=LabelList())
        self._documents.optimize()

    def _repair_documents(self) -> None:
        """Rewrite the documents rows that disagree with the chunks table: missing (a process died
        after writing a document's chunks, before its row), stale (old content or scope), orphaned
        (its chunks deleted) or duplicated. Reads only IDs, scopes and hashes, unless a row is wrong."""
        expected, rows_of = self._expected_document_rows()
        present: dict[str, tuple[tuple[str, ...], str]] = {}
        duplicated: set[str] = set()
        listing = self._documents.search().select(["doc_id", "scope", "marker"])
        for row in listing.limit(max(self._documents.count_rows(), 1)).to_arrow().to_pylist():
            if row["doc_id"] in present:
                duplicated.add(row["doc_id"])
            present[row["doc_id"]] = (tuple(sorted(row["scope"] or ())), row["marker"])
        wrong = {d for d, row in expected.items() if present.get(d) != row} | (duplicated & expected.keys())
        orphaned = present.keys() - expected.keys()
        if not wrong and not orphaned:
            return
        missing = len(wrong - present.keys())
        log.warning("repairing the documents table (an interrupted write left it behind the chunks): "
                    "%s rows missing, %s stale, %s orphaned", missing, len(wrong) - missing, len(orphaned))
        doomed = sorted(orphaned)
        for start in range(0, len(doomed), _REPAIR_BATCH):
            self._documents.delete(f"doc_id IN ({', '.join(map(_quote, doomed[start:start + _REPAIR_BATCH]))})")
        sizes = ((d, len(rows_of[d])) for d in sorted(wrong))
        for batch in whole_document_batches(sizes, batch_chunks=_REPAIR_BATCH):
            rows = _documents_arrow(self._whole_documents(batch, rows_of, with_vectors=False))
            # Delete and add rather than merge: a duplicated ID matches two rows.
            self._documents.delete(f"doc_id IN ({', '.join(map(_quote, batch))})")
            self._documents.add(rows)

    def _expected_document_rows(self) -> tuple[dict[str, tuple[tuple[str, ...], str]], dict[str, list[int]]]:
        """``{doc_id: (sorted scope, marker)}`` as the chunks say the documents table should hold
        them, and ``{doc_id: row ids of its chunks}``."""
        columns = ["doc_id", "position", "scope", "content_hash"]
        found = self._table.search().select(columns).with_row_id(True).limit(self.count() or 1).to_arrow()
        chunks_of: dict[str, list[tuple[int, list[str], str, int]]] = {}
        for doc_id, position, scope, content_hash, row_id in zip(
                *(found[c].to_pylist() for c in [*columns, "_rowid"])):
            chunks_of.setdefault(doc_id, []).append((position, scope, content_hash, row_id))
        expected, rows_of = {}, {}
        for doc_id, parts in chunks_of.items():
            parts.sort(key=lambda part: part[0])
            expected[doc_id] = (tuple(sorted(parts[0][1] or ())), _marker([part[2] for part in parts]))
            rows_of[doc_id] = [part[3] for part in parts]
        return expected, rows_of

    def _build_ann_index(self, rows: int) -> None:
        partitions = max(1, rows // self.rows_per_partition)
        log.info("building the ANN index over %s chunks (%s partitions)", rows, partitions)
        self._table.create_index("vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions))
        settings = self._tune_nprobes(partitions)
        (self.path / _ANN_SETTINGS).write_text(json.dumps(settings))
        log.info("ANN index ready: %s", settings)

    def _tune_nprobes(self, partitions: int, sample: int = 150) -> dict:
        """The fewest partitions to probe for recall@10 against exact search ≥ the target (or, when
        probing all of them stays below it, within ``_CEILING_TOLERANCE`` of that), on a sample of
        question-like queries (see ``_TUNING_NOISE``).

        Measured the way the bot queries: each sampled query carries the access filter of an
        audience that may see the chunk it was drawn near, so small channels count too.
        """
        queries = self._sample_queries(sample)
        exact = [self._nearest_ids(q, where, k=10, exact=True) for q, where in queries]

        def recall_at(nprobes: int) -> float:
            found = [self._nearest_ids(q, where, k=10, exact=False, nprobes=nprobes) for q, where in queries]
            return float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(found, exact)]))

        ceiling = recall_at(partitions)
        wanted = min(TARGET_ANN_RECALL, ceiling - _CEILING_TOLERANCE)
        nprobes, recall = partitions, ceiling
        for candidate in (n for n in _NPROBES_LADDER if n < partitions):
            found = recall_at(candidate)
            if found >= wanted:
                nprobes, recall = candidate, found
                break
        return {"nprobes": nprobes, "recall_at_10": recall, "recall_all_partitions": ceiling,
                "partitions": partitions, "sample": len(queries)}

    def _sample_queries(self, n: int) -> list[tuple[np.ndarray, str]]:
        rng = np.random.default_rng(0)
        rows = self._table.count_rows()
        offsets = sorted(rng.choice(rows, size=min(n, rows), replace=False).tolist())
        picked = self._table.take_offsets(offsets).select(["vector", "scope"]).to_arrow().to_pylist()
        queries = []
        for row in picked:
            vector = np.asarray(row["vector"], dtype=np.float32)
            # A question is near a chunk, not on it: perturb so the test is no trivial self-match.
            noisy = vector + rng.normal(scale=_TUNING_NOISE, size=vector.shape).astype(np.float32)
            label = str(rng.choice(row["scope"]))
            audience = Audience.for_conversation("D0ANNTUNING" if label == PUBLIC else label)
            queries.append((noisy / np.linalg.norm(noisy), filter_for(audience).lance_where()))
        return queries

    def _nearest_ids(self, vector: np.ndarray, where: str, *, k: int, exact: bool, nprobes: int = 0) -> list[str]:
        query = self._dense_query(vector, k=k, where=where, exact=exact, nprobes=nprobes)
        return query.select(["chunk_id", "_distance"]).to_arrow()["chunk_id"].to_pylist()

    def _ann_nprobes(self) -> int | None:
        """The tuned nprobes, or None while there is no ANN index (re-read when the file changes)."""
        settings = self.path / _ANN_SETTINGS
        try:
            mtime = settings.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime != self._ann_settings[0]:
            self._ann_settings = (mtime, int(json.loads(settings.read_text())["nprobes"]))
        return self._ann_settings[1]

    # -- reading -------------------------------------------------------------------------------

    def count(self) -> int:
        return 0 if self._table is None else self._table.count_rows()

    def list_documents(self, access: AccessFilter | None = None) -> list[DocumentInfo]:
        if self._readable_table() is None:
            return []
        columns = ["doc_id", "title", "source", "path", "content_hash", "scope"]
        query = self._table.search().select(columns).limit(self._table.count_rows() or 1)
        if access is not None:
            query = query.where(access.lance_where(), prefilter=True)
        docs: dict[str, DocumentInfo] = {}
        for row in query.to_arrow().to_pylist():
            known = docs.get(row["doc_id"])
            chunks = known.chunks + 1 if known else 1
            docs[row["doc_id"]] = DocumentInfo(
                doc_id=row["doc_id"], title=row["title"], source=row["source"], path=row["path"],
                content_hash=row["content_hash"], scope=Scope.from_labels(row["scope"]), chunks=chunks,
            )
        return sorted(docs.values(), key=lambda d: (d.title.lower(), d.doc_id))

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        if self._table is None:
            return []
        rows = (
            self._table.search().where(f"doc_id = {_quote(doc_id)}")
            .select([*_META_COLUMNS, "vector"]).limit(100_000).to_arrow().to_pylist()
        )
        return sorted((_row_to_chunk(r) for r in rows), key=lambda c: c.position)

    def export_documents(self, *, batch_chunks: int = 2_000) -> Iterator[dict[str, list[StoredChunk]]]:
        """Every document with its chunks and vectors, whole documents per batch (for migration)."""
        yield from self._document_batches(with_vectors=True, batch_chunks=batch_chunks)

    def _document_batches(self, *, with_vectors: bool, batch_chunks: int = 2_000) -> Iterator[dict[str, list[StoredChunk]]]:
        if self._table is None:
            return
        ids = self._table.search().select(["doc_id"]).with_row_id(True).limit(self.count() or 1).to_arrow()
        rows_of: dict[str, list[int]] = {}
        for doc_id, row_id in zip(ids["doc_id"].to_pylist(), ids["_rowid"].to_pylist()):
            rows_of.setdefault(doc_id, []).append(row_id)
        sizes = ((doc_id, len(rows_of[doc_id])) for doc_id in sorted(rows_of))
        for batch in whole_document_batches(sizes, batch_chunks=batch_chunks):
            yield self._whole_documents(batch, rows_of, with_vectors=with_vectors)

    def _whole_documents(self, doc_ids: list[str], rows_of: dict[str, list[int]], *,
                         with_vectors: bool) -> dict[str, list[StoredChunk]]:
        fetched = self._table.take_row_ids([r for d in doc_ids for r in rows_of[d]])
        if with_vectors:
            rows = self._with_vectors(fetched.select([*_META_COLUMNS, "vector"]).to_arrow())
        else:
            rows = fetched.select(_META_COLUMNS).to_arrow().to_pylist()
        docs: dict[str, list[StoredChunk]] = {d: [] for d in doc_ids}
        for row in rows:
            docs[row["doc_id"]].append(_row_to_chunk(row, with_vector=with_vectors))
        return {d: sorted(chunks, key=lambda c: c.position) for d, chunks in docs.items()}

    def search(self, request: SearchRequest, access: AccessFilter) -> list[ScoredChunk]:
        if not isinstance(access, AccessFilter):
            raise StoreError("refusing to search without an access filter")
        if self._readable_table() is None:
            return []
        where = access.lance_where()
        # Phase 1 ranks IDs only. The keyword half starts first, in the background: it needs no
        # vector, so it runs while the question is embedded (the encoder releases the GIL) and the
        # dense search runs. From the postings in memory when they are ready, else LanceDB's two
        # BM25 queries (LanceDB releases the GIL too).
        words = keyword_query(request.text) if request.mode != "dense" else ""
        # The table's version is read once: both in-memory copies are checked against it.
        version = self._table.version if self.vectors_in_memory else None
        keywords = self._keyword_snapshot(version) if words else None
        keyword_job = document_job = None
        if keywords is not None:
            keyword_job = self._pool.submit(keywords.matches, words, access.allowed, request.candidates)
        elif words:
            keyword_job = self._pool.submit(self._keyword_ids, words, where, request.candidates)
            document_job = self._pool.submit(self._document_scores, words, where, request.candidates)
        vector = request.query_vector()
        snapshot = self._vector_snapshot(version)
        dense = self._dense_ids(vector, request, access, snapshot) if request.mode != "bm25" else {}
        if keyword_job is None:
            keyword = {}
        elif document_job is None:
            keyword = _with_document_scores(*keyword_job.result())
        else:
            keyword = _with_document_scores(keyword_job.result(), document_job.result())
        if request.mode == "dense":
            ranked = sorted(((cid, sim) for cid, (sim, _) in dense.items()), key=lambda item: -item[1])
        elif request.mode == "bm25":
            ranked = sorted(((cid, score) for cid, (score, _) in keyword.items()), key=lambda item: -item[1])
        else:
            ranked = fuse({c: v[0] for c, v in dense.items()}, {c: v[0] for c, v in keyword.items()},
                          dense_weight=request.dense_weight)
        ranked = ranked[: request.k]
        # Phase 2 reads whole rows for the winners only.
        row_ids = {cid: (dense.get(cid) or keyword.get(cid))[1] for cid, _ in ranked}
        rows = self._rows(row_ids, access, snapshot)
        return [
            ScoredChunk(
                chunk=_row_to_chunk(rows[cid], with_vector=False),
                score=score,
                # From the stored vector, not the index's distance: a quantised ANN index
                # estimates distances, and the relevance floor needs the true cosine.
                similarity=float(vector @ rows[cid]["vector"]),
            )
            for cid, score in ranked
            if cid in rows
        ]

    def _dense_ids(self, vector: np.ndarray, request: SearchRequest, access: AccessFilter,
                   snapshot: VectorSnapshot | None) -> dict[str, tuple[float, int]]:
        """``{chunk_id: (cosine similarity, row id)}`` of the nearest chunks the filter allows."""
        if snapshot is not None:
            return snapshot.nearest(vector, access.allowed, k=request.candidates)
        where = access.lance_where()
        nprobes = self._ann_nprobes()
        exact = nprobes is None or self._visible_count(where) < self.exact_search_max_rows
        query = self._dense_query(vector, k=request.candidates, where=where, exact=exact,
                                  nprobes=nprobes or 0)
        found = query.with_row_id(True).select(["chunk_id", "_distance"]).to_arrow()
        similarity = (1.0 - found["_distance"].to_numpy()).tolist()
        return dict(zip(found["chunk_id"].to_pylist(), zip(similarity, found["_rowid"].to_pylist())))

    def _vector_snapshot(self, version: int | None = None) -> VectorSnapshot | None:
        """The in-memory vectors of the table's ``version`` (read now if not given), or None when the
        table is too big.

        Reloaded when the version changes (an ingest wrote); the reload blocks the searches that
        need it, so no search ever ranks a document's old vectors or scope after a write it can see.
        """
        table = self._table
        if table is None or not self.vectors_in_memory:
            return None
        version = table.version if version is None else version
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot
        with self._snapshot_lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.version == version:
                return snapshot
            if table.count_rows() >= self.ann_min_rows:
                self._snapshot = None
                return None
            columns = table.search().select([*_META_COLUMNS, "vector"]).with_row_id(True)
            loaded = columns.limit(self.ann_min_rows).to_arrow()
            if loaded.num_rows >= self.ann_min_rows:  # grew past the threshold since it was counted
                self._snapshot = None
                return None
            # Labelled with the version seen before reading: if the read saw a newer one, the next
            # search finds the labels differ and reads again.
            self._snapshot = VectorSnapshot.from_arrow(version=version, table=loaded)
            del loaded
            _return_freed_memory()
            return self._snapshot

    def _keyword_snapshot(self, version: int) -> KeywordSnapshot | None:
        """The in-memory keyword postings of the tables' current versions (the chunks table's is
        ``version``), or None: LanceDB then answers, and postings for these versions are built in
        the background once they settle."""
        if not self.vectors_in_memory or self._table is None:
            return None
        versions = self._text_versions(version)
        keywords = self._keywords
        if keywords is not None and keywords.versions == versions:
            return keywords
        if self.keyword_settle_s is None:  # built here and now: every search is answered from memory
            return self._keywords if self.prepare_keyword_index() else None
        with self._keywords_lock:
            if self._keywords_pending or versions == self._keywords_skip:
                return None
            self._keywords_pending = True
        threading.Thread(target=self._build_keywords_when_settled, args=(versions,), name="lance-keywords",
                         daemon=True).start()
        return None

    def _text_versions(self, version: int | None = None) -> tuple:
        """The versions of the chunks table (``version`` if read already) and the documents table."""
        documents = self._documents_table()
        return (self._table.version if version is None else version,
                documents.version if documents is not None else None)

    def prepare_keyword_index(self) -> bool:
        """Build the in-memory keyword postings for the tables' current versions now, unless they
        are built already (a process that serves can do this before its first question; with
        ``keyword_settle_s=None`` every search that finds them stale does). True if they are ready."""
        if not self.vectors_in_memory or self._table is None:
            return False
        return self._keywords_for(self._text_versions())

    def _keywords_for(self, versions: tuple) -> bool:
        """Build the postings for ``versions`` unless they are built, or known not to be worth it
        (too big for memory, or failed). True if they are ready."""
        with self._keywords_build_lock:
            if versions == self._keywords_skip:
                return False
            if self._keywords is None or self._keywords.versions != versions:
                self._build_keywords(versions)
            return self._keywords is not None and self._keywords.versions == versions

    def _build_keywords_when_settled(self, versions: tuple) -> None:
        """Wait until no write has come for ``keyword_settle_s``, then build (in a thread of its own)."""
        try:
            while self._table is not None:
                time.sleep(self.keyword_settle_s)
                if self._table is None:
                    return
                latest = self._text_versions()
                if latest == versions:
                    self._keywords_for(versions)
                    return
                versions = latest
        except Exception as e:  # the store was closed, or a read failed: LanceDB answers meanwhile
            log.debug("keyword postings not built: %s", e)
        finally:
            with self._keywords_lock:
                self._keywords_pending = False

    def _build_keywords(self, versions: tuple) -> None:
        """Read every text and build the postings, labelled with the versions seen before reading
        (if the read saw newer ones, the next search finds the labels differ and builds again)."""
        table = self._table
        if table is None:  # closed meanwhile
            return
        try:
            if table.count_rows() >= self.ann_min_rows:
                self._keywords_skip = versions  # as the vectors: LanceDB's indexes serve a table this big
                self._keywords = None
                return
            # Streamed: the texts are analyzed batch by batch and never all held at once.
            chunks = table.search().select(["chunk_id", "doc_id", "scope", "search_text"])
            chunks = chunks.with_row_id(True).limit(self.ann_min_rows).to_batches(_TEXT_BATCH_ROWS)
            self._keywords = KeywordSnapshot.from_arrow(versions=versions, chunks=chunks,
                                                        documents=self._document_texts())
            _return_freed_memory()
        except Exception as e:  # an accelerator: LanceDB's own index still answers
            self._keywords_skip = versions
            log.warning("in-memory keyword search unavailable; LanceDB's full-text index answers: %s", e)

    def _document_texts(self) -> Iterator[pa.RecordBatch] | None:
        """The documents table's texts and scopes, streamed, or None when it is missing or has
        another layout (chunk scores then rank alone, as they do in :meth:`_document_scores`)."""
        documents = self._documents_table()
        if documents is None:
            return None
        if documents.schema != _DOCUMENTS_SCHEMA:  # optimize() rebuilds it
            log.warning("the documents table has another layout; ranking by chunk scores alone")
            return None
        try:
            query = documents.search().select(["doc_id", "scope", "search_text"])
            return query.limit(max(documents.count_rows(), 1)).to_batches(_TEXT_BATCH_ROWS)
        except Exception as e:
            log.warning("documents table unreadable; ranking by chunk scores alone: %s", e)
            return None

    def _keyword_ids(self, words: str, where: str, limit: int) -> dict[str, tuple[float, int, str]]:
        """``{chunk_id: (BM25 score, row id, doc_id)}`` of the best keyword matches the filter allows."""
        query = self._table.search(words, query_type="fts", fts_columns="search_text")
        query = query.where(where, prefilter=True).limit(limit).with_row_id(True)
        found = query.select(["chunk_id", "doc_id", "_score"]).to_arrow()
        return dict(zip(found["chunk_id"].to_pylist(), zip(
            found["_score"].to_numpy().tolist(), found["_rowid"].to_pylist(), found["doc_id"].to_pylist())))

    def _document_scores(self, words: str, where: str, limit: int) -> dict[str, float]:
        """``{doc_id: BM25 score of the whole document}`` of the best matching documents the filter
        allows, or {} when the documents table is missing or fails (chunk scores then rank alone)."""
        documents = self._documents_table()
        if documents is None:
            return {}
        try:
            query = documents.search(words, query_type="fts", fts_columns="search_text")
            found = query.where(where, prefilter=True).limit(limit).select(["doc_id", "_score"]).to_arrow()
        except Exception as e:
            if not self._documents_failure_logged:
                self._documents_failure_logged = True
                log.warning("document-level BM25 failed; ranking by chunk scores alone: %s", e)
            return {}
        return dict(zip(found["doc_id"].to_pylist(), found["_score"].to_numpy().tolist()))

    def _rows(self, row_ids: dict[str, int], access: AccessFilter, snapshot: VectorSnapshot | None) -> dict[str, dict]:
        """Full rows by row ID, checked against the IDs and the filter they were found with.

        From the in-memory snapshot when it has them all, else from the table. Row IDs change when
        the table is compacted; if that happened between the two phases, the rows are read again by
        chunk ID instead. The access check here is a second line of defence: the pre-filter decided.
        """
        if not row_ids:
            return {}
        rows = snapshot.rows(list(row_ids.values())) if snapshot is not None else None
        if rows is None or {r["chunk_id"] for r in rows} != set(row_ids):
            rows = self._read_rows(row_ids)
        return {r["chunk_id"]: r for r in rows if access.allows(Scope.from_labels(r["scope"]))}

    def _read_rows(self, row_ids: dict[str, int]) -> list[dict]:
        """Rows from the table by row ID, by chunk ID if the row IDs went stale."""
        columns = [*_META_COLUMNS, "vector"]
        fetched = self._table.take_row_ids(list(row_ids.values())).select(columns).to_arrow()
        if set(fetched["chunk_id"].to_pylist()) != set(row_ids):
            ids = ", ".join(_quote(c) for c in row_ids)
            query = self._table.search().where(f"chunk_id IN ({ids})").select(columns).limit(len(row_ids))
            fetched = query.to_arrow()
        return self._with_vectors(fetched)

    def _with_vectors(self, fetched: pa.Table) -> list[dict]:
        """Rows as dicts, their vectors as numpy arrays (as Python lists they cost more than the
        rest of a search)."""
        meta = fetched.select(_META_COLUMNS).to_pylist()
        vectors = fetched["vector"].combine_chunks().flatten().to_numpy().reshape(len(meta), self.dimension)
        for row, vector in zip(meta, vectors):
            row["vector"] = vector
        return meta

    def _dense_query(self, vector, *, k: int, where: str | None, exact: bool, nprobes: int):
        query = self._table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
        query = query.distance_type("cosine").limit(k)
        if where is not None:
            query = query.where(where, prefilter=True)
        if exact:
            return query.bypass_vector_index()
        return query.nprobes(nprobes)

    def _visible_count(self, where: str) -> int:
        """How many chunks an audience can see, cached per table version (served by the label index)."""
        key = (self._table.version, where)
        if key not in self._count_cache:
            self._count_cache = {k: v for k, v in self._count_cache.items() if k[0] == key[0]}
            self._count_cache[key] = self._table.count_rows(where)
        return self._count_cache[key]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._snapshot = None
        self._keywords = None
        self._table = None
        self._documents = None
        self._db = None


def _return_freed_memory() -> None:
    """Hand the heap that building an in-memory copy freed back to the system.

    Building one allocates several times what it keeps (texts, token lists, sort buffers), and
    glibc keeps freed heap mapped: in the bot at 100k chunks that was 600 MB of resident memory
    holding nothing. A no-op where the C library has no ``malloc_trim``.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _with_document_scores(chunks: dict[str, tuple[float, int, str]],
                          documents: dict[str, float]) -> dict[str, tuple[float, int]]:
    """``{chunk_id: (keyword score, row id)}``: each chunk's BM25 score plus its document's (0 when
    its document is not among the best matching documents). Only found chunks are scored."""
    return {
        chunk_id: (score + DOCUMENT_MATCH_WEIGHT * documents.get(doc_id, 0.0), row_id)
        for chunk_id, (score, row_id, doc_id) in chunks.items()
    }


def _documents_arrow(chunks_by_doc: dict[str, list[StoredChunk]]) -> pa.Table:
    """Rows of the documents table: each document's whole text and its scope (its chunks share it)."""
    ordered = [sorted(chunks, key=lambda c: c.position) for chunks in chunks_by_doc.values()]
    return pa.table({
        "doc_id": list(chunks_by_doc),
        "scope": [chunks[0].scope.as_list() if chunks else [] for chunks in ordered],
        "search_text": [document_text(chunks) for chunks in ordered],
        "marker": [_marker([c.content_hash for c in chunks]) for chunks in ordered],
    }, schema=_DOCUMENTS_SCHEMA)


def _marker(content_hashes: list[str]) -> str:
    """What a documents row was built from: its chunks' content hashes, in order (the hashes cover
    the title, the text and how it was chunked). Compared by ``optimize`` to find stale rows.

    >>> _marker(["abc", "abc"]) == _marker(["abc", "abc"]) != _marker(["abc"])
    True
    """
    return hashlib.sha256("\n".join(content_hashes).encode()).hexdigest()[:32]


def _search_text(chunk: StoredChunk) -> str:
    """What BM25 sees: title and headings carry meaning a chunk's body often lacks."""
    return "\n".join([chunk.title, *chunk.heading_path, chunk.text])


def _row_to_chunk(row: dict, *, with_vector: bool = True) -> StoredChunk:
    vector = row.get("vector") if with_vector else None
    return StoredChunk(
        chunk_id=row["chunk_id"], doc_id=row["doc_id"], position=int(row["position"]), title=row["title"],
        heading_path=tuple(row["heading_path"] or ()), text=row["text"], source=row["source"],
        path=row["path"], scope=Scope.from_labels(row["scope"]), content_hash=row["content_hash"],
        embedding_hash=row["embedding_hash"],
        vector=np.asarray(vector, dtype=np.float32) if vector is not None else None,
    )
