"""The store for teams that outgrow one machine: one Weaviate collection, through weaviate-client v4.

Vectors are ours (no vectorizer module): each object carries the chunk's vector as the named vector
``chunk`` (cosine HNSW), and BM25 runs over its title, headings and text. Every search sends the
audience's filter from :mod:`knowledge.access` (``scope`` contains any allowed label) inside the
query, so a private chunk never competes for a rank.

Whole-document replacement without transactions. Weaviate writes objects one by one, so a
document's new chunks are written *beside* its old ones and the old ones deleted afterwards.
Each object records its document version (a hash of the content and the chunk texts), when the
version was written (``generation``) and how many chunks the version has (``chunk_count``).
Readers take, per document, the newest version whose chunks are all there; a half-written new
version or a half-deleted old one is never read as the document. Object UUIDs come from the chunk
ID and the version, so writing the same content again overwrites the same objects (idempotent),
and a changed document never overwrites the chunks a reader may still be using.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np

from knowledge.access import AccessFilter, Scope
from knowledge.errors import StoreError
from knowledge.stores.base import SearchRequest, whole_document_batches
from knowledge.types import DocumentInfo, ScoredChunk, StoredChunk

log = logging.getLogger(__name__)

VECTOR = "chunk"
# Weaviate answers at most this many objects per query unless its QUERY_MAXIMUM_RESULTS is raised.
MAX_RESULTS = 10_000
_INSERT_BATCH = 500
_DELETE_BATCH = 100
# Objects per page when listing (no vectors: small objects, few round trips).
_LIST_PAGE = 2_000
_FAILURES_SHOWN = 5
_DESCRIPTION_KEY = "lorebot"

T = TypeVar("T")

Consistency = Literal["ONE", "QUORUM", "ALL"]
Fusion = Literal["relative_score", "ranked"]


@dataclass(frozen=True)
class WeaviateOptions:
    """How to reach Weaviate and how the collection is laid out (from settings: ``WEAVIATE_*``)."""

    url: str
    api_key: str | None = None
    grpc_port: int = 50051
    # None: the REST URL's host (Weaviate's Helm chart serves gRPC from a Service of its own).
    grpc_host: str | None = None
    collection: str = "LorebotChunk"
    timeout_s: float = 10.0
    startup_timeout_s: float = 5.0
    retries: int = 2
    retry_backoff_s: float = 0.5
    unavailable_pause_s: float = 30.0
    replication_factor: int = 1
    shards: int = 1
    consistency: Consistency = "QUORUM"
    fusion: Fusion = "relative_score"


def parse_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a Weaviate REST URL; the port defaults by scheme.

    >>> parse_url("https://weaviate.example.com")
    ('weaviate.example.com', 443, True)
    >>> parse_url("http://127.0.0.1:8080/")
    ('127.0.0.1', 8080, False)
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"WEAVIATE_URL must look like http://host:8080 or https://host, not {url!r}")
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as e:
        raise StoreError(f"WEAVIATE_URL has a bad port: {url!r}") from e
    return parts.hostname, port, secure


def chunk_uuid(chunk_id: str, version: str) -> str:
    """The object UUID of one chunk of one document version: the same inputs, the same object."""
    from weaviate.util import generate_uuid5

    return generate_uuid5(f"{chunk_id}@{version}")


def document_version(chunks: list[StoredChunk]) -> str:
    """A document version's identity: its content and how it was cut and embedded."""
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(f"{c.chunk_id}\0{c.content_hash}\0{c.embedding_hash}\0".encode())
    return digest.hexdigest()[:24]


def _properties():
    from weaviate.classes.config import DataType, Property, Tokenization

    def exact(name: str, data_type=DataType.TEXT) -> Property:
        return Property(name=name, data_type=data_type, tokenization=Tokenization.FIELD, index_searchable=False)

    def words(name: str, data_type=DataType.TEXT) -> Property:
        return Property(name=name, data_type=data_type, tokenization=Tokenization.WORD)

    return [
        exact("chunk_id"), exact("doc_id"), Property(name="position", data_type=DataType.INT),
        words("title"), words("heading_path", DataType.TEXT_ARRAY), words("text"),
        exact("source"), exact("path"), exact("scope", DataType.TEXT_ARRAY),
        exact("content_hash"), exact("embedding_hash"), exact("version"),
        Property(name="generation", data_type=DataType.INT), Property(name="chunk_count", data_type=DataType.INT),
    ]


_SEARCHABLE = ["title", "heading_path", "text"]
_BOOKKEEPING = ["doc_id", "position", "version", "generation", "chunk_count"]
_LISTED = [*_BOOKKEEPING, "title", "source", "path", "content_hash", "scope"]


class WeaviateStore:
    """A Weaviate collection. Implements :class:`knowledge.stores.base.VectorStore`."""

    def __init__(self, options: WeaviateOptions, *, dimension: int, model_id: str):
        self.options = options
        self.dimension = dimension
        self.model_id = model_id
        self._last_generation = 0
        self._unavailable_until = 0.0
        self._generation_lock = threading.Lock()
        self._client = self._connect()
        try:
            self._collection = self._open_collection()
        except BaseException:
            self._client.close()
            raise

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self):
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        host, port, secure = parse_url(self.options.url)
        grpc_host = self.options.grpc_host or host
        where = (f"Weaviate at {self.options.url} (gRPC port {self.options.grpc_port})" if grpc_host == host
                 else f"Weaviate at {self.options.url} (gRPC at {grpc_host}:{self.options.grpc_port})")
        timeout = Timeout(init=self.options.startup_timeout_s, query=self.options.timeout_s,
                          insert=max(self.options.timeout_s, 60.0))

        def connect():
            client = weaviate.connect_to_custom(
                http_host=host, http_port=port, http_secure=secure,
                grpc_host=grpc_host, grpc_port=self.options.grpc_port, grpc_secure=secure,
                auth_credentials=Auth.api_key(self.options.api_key) if self.options.api_key else None,
                additional_config=AdditionalConfig(timeout=timeout),
                # The client's own start-up checks include a request to pypi.org for its latest
                # version; lorebot makes no calls beyond its own services, so it checks here.
                skip_init_checks=True,
            )
            try:
                if not client.is_ready():
                    raise _NotReadyYet("it answers but is not ready yet (/v1/.well-known/ready)")
                _wait_for_grpc(grpc_host, self.options.grpc_port, secure=secure, timeout_s=self.options.startup_timeout_s)
            except BaseException:
                client.close()
                raise
            return client

        try:
            return self._retrying(f"connecting to {where}", connect, wrap=False)
        except Exception as e:
            raise StoreError(_connect_message(e, where)) from e

    def _open_collection(self):
        from weaviate.classes.config import ConsistencyLevel

        name = self.options.collection
        if not self._retrying("checking the collection", lambda: self._client.collections.exists(name)):
            self._create_collection()
        collection = self._client.collections.get(name)
        self._check_schema(self._retrying("reading the collection's schema", collection.config.get))
        return collection.with_consistency_level(getattr(ConsistencyLevel, self.options.consistency))

    def _create_collection(self) -> None:
        from weaviate.classes.config import Configure, StopwordsPreset, VectorDistances

        log.info("creating the Weaviate collection %s", self.options.collection)
        description = json.dumps({_DESCRIPTION_KEY: 1, "embedding_model": self.model_id, "dimension": self.dimension})
        create = lambda: self._client.collections.create(  # noqa: E731
            self.options.collection,
            description=description,
            properties=_properties(),
            vector_config=Configure.Vectors.self_provided(
                name=VECTOR, vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)),
            inverted_index_config=Configure.inverted_index(bm25_b=0.75, bm25_k1=1.2,
                                                           stopwords_preset=StopwordsPreset.EN),
            replication_config=Configure.replication(factor=self.options.replication_factor),
            sharding_config=Configure.sharding(desired_count=self.options.shards),
        )
        try:
            self._retrying("creating the collection", create, wrap=False)
        except Exception as e:
            # Another replica may have created it first; anything else is a real failure.
            if not self._client.collections.exists(self.options.collection):
                raise StoreError(f"creating the Weaviate collection {self.options.collection} failed: {_reason(e)}") from e

    def _check_schema(self, config) -> None:
        """Refuse a collection lorebot cannot use, naming what differs and how to fix it."""
        name = self.options.collection
        problems = schema_problems(config, self.model_id, self.dimension)
        if problems:
            raise StoreError(
                f"the Weaviate collection {name} does not match what lorebot needs: {'; '.join(problems)}. "
                "Point LOREBOT_WEAVIATE_COLLECTION at a new name (and migrate), or delete the collection"
            )
        factor = getattr(getattr(config, "replication_config", None), "factor", None)
        if factor is not None and factor != self.options.replication_factor:
            log.warning("the Weaviate collection %s has replication factor %s, settings say %s (kept as is)",
                        name, factor, self.options.replication_factor)

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def exclusive_writer(self) -> Iterator[None]:
        """A no-op: Weaviate is a server that takes writes from many clients at once, and there is
        no shared directory to lock. The store itself needs no more: a document's versions are
        written beside each other and readers pick a complete one. (Two ingests of the *same*
        document at the same moment can each delete the other's version; the next ingest writes it
        again. A cluster-wide lock, if ever wanted, belongs in the database, not here.)"""
        yield

    def upsert_documents(self, chunks_by_doc: dict[str, list[StoredChunk]]) -> None:
        if not chunks_by_doc:
            return
        from weaviate.classes.data import DataObject

        generation = self._next_generation()
        versions = {doc_id: document_version(chunks) for doc_id, chunks in chunks_by_doc.items()}
        objects = []
        for doc_id, chunks in chunks_by_doc.items():
            for c in chunks:
                if c.vector is None or len(c.vector) != self.dimension:
                    raise StoreError(f"chunk {c.chunk_id} has no {self.dimension}-dimensional vector")
                objects.append(DataObject(
                    uuid=chunk_uuid(c.chunk_id, versions[doc_id]),
                    properties=_to_properties(c, version=versions[doc_id], generation=generation, count=len(chunks)),
                    vector={VECTOR: [float(x) for x in c.vector]},
                ))
        self._insert(objects, what=f"writing {len(chunks_by_doc)} documents")
        # Only now, with every new chunk in place, do the old versions go.
        from weaviate.classes.query import Filter

        stale = [Filter.by_property("doc_id").equal(d) & Filter.by_property("version").not_equal(v)
                 for d, v in versions.items()]
        self._delete(stale, what=f"removing the old versions of {len(versions)} documents")

    def rescope_document(self, doc_id: str, scope: Scope) -> None:
        from weaviate.classes.data import DataObject

        rows = self._current_rows([doc_id]).get(doc_id, [])
        objects = [DataObject(uuid=row["uuid"], properties={**row["properties"], "scope": scope.as_list()},
                              vector={VECTOR: row["vector"]}) for row in rows]
        # The same UUIDs: each object is replaced in place, the version stays complete throughout.
        self._insert(objects, what=f"changing the scope of {doc_id}")

    def delete_document(self, doc_id: str) -> None:
        from weaviate.classes.query import Filter

        self._delete([Filter.by_property("doc_id").equal(doc_id)], what=f"deleting {doc_id}")

    def _insert(self, objects: list, *, what: str) -> None:
        """Batch insert; every object that failed is reported (never swallowed)."""
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        def name(obj) -> str:
            return (obj.properties or {}).get("chunk_id", str(obj.uuid))

        failures: list[str] = []
        for start in range(0, len(objects), _INSERT_BATCH):
            batch = objects[start:start + _INSERT_BATCH]
            try:
                result = self._retrying(what, lambda: self._collection.data.insert_many(batch))
            except StoreError as e:
                if not isinstance(e.__cause__, WeaviateInsertManyAllFailedError):
                    raise
                # The client reports only the distinct messages when every object of a batch failed.
                reason = _reason(e.__cause__).split("Here is the set of all errors: ")[-1]
                failures.extend(f"{name(obj)}: {reason}" for obj in batch)
                continue
            failures.extend(f"{name(batch[i])}: {error.message}" for i, error in sorted(result.errors.items()))
        if failures:
            shown = "; ".join(failures[:_FAILURES_SHOWN])
            more = f" (and {len(failures) - _FAILURES_SHOWN} more)" if len(failures) > _FAILURES_SHOWN else ""
            raise StoreError(f"{what}: Weaviate refused {len(failures)} of {len(objects)} chunks: {shown}{more}")

    def _delete(self, filters: list, *, what: str) -> None:
        from weaviate.classes.query import Filter

        for start in range(0, len(filters), _DELETE_BATCH):
            group = filters[start:start + _DELETE_BATCH]
            where = group[0] if len(group) == 1 else Filter.any_of(group)
            result = self._retrying(what, lambda: self._collection.data.delete_many(where=where))
            if result.failed:
                raise StoreError(f"{what}: Weaviate failed to delete {result.failed} of {result.matches} chunks")

    def _next_generation(self) -> int:
        """Increasing within this process and, through the clock, across replicas.

        Microseconds, not nanoseconds: the client sends integers as JSON-style doubles, exact only
        below 2**53 (nanoseconds since 1970 are past it, and would round to equal values).
        """
        with self._generation_lock:
            self._last_generation = max(time.time_ns() // 1_000, self._last_generation + 1)
            return self._last_generation

    # -- reading -------------------------------------------------------------------------------

    def count(self) -> int:
        result = self._retrying("counting chunks", lambda: self._collection.aggregate.over_all(total_count=True))
        return int(result.total_count or 0)

    def list_documents(self, access: AccessFilter | None = None) -> list[DocumentInfo]:
        rows = self._retrying("listing documents", lambda: [
            _row(o) for o in self._collection.iterator(return_properties=_LISTED, cache_size=_LIST_PAGE)])
        docs = []
        for doc_id, chunks in current_versions(rows).items():
            first = chunks[0]["properties"]
            scope = Scope.from_labels(first["scope"])
            # A cursor over the whole collection cannot carry a filter in Weaviate; the access
            # decision is still the one rule of knowledge.access.
            if access is None or access.allows(scope):
                docs.append(DocumentInfo(doc_id=doc_id, title=first["title"], source=first["source"],
                                         path=first["path"], content_hash=first["content_hash"], scope=scope,
                                         chunks=len(chunks)))
        return sorted(docs, key=lambda d: (d.title.lower(), d.doc_id))

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        rows = self._current_rows([doc_id]).get(doc_id, [])
        return [_to_chunk(row) for row in rows]

    def export_documents(self, *, batch_chunks: int = 2_000) -> Iterator[dict[str, list[StoredChunk]]]:
        """Every document with its chunks and vectors, whole documents per batch (for migration)."""
        sizes = ((d.doc_id, d.chunks) for d in self.list_documents())
        for batch in whole_document_batches(sizes, batch_chunks=batch_chunks):
            yield {d: [_to_chunk(r) for r in rows] for d, rows in self._current_rows(batch).items()}

    def _current_rows(self, doc_ids: list[str]) -> dict[str, list[dict]]:
        from weaviate.classes.query import Filter

        where = Filter.by_property("doc_id").contains_any(doc_ids)
        result = self._retrying("reading chunks", lambda: self._collection.query.fetch_objects(
            filters=where, limit=MAX_RESULTS, include_vector=[VECTOR]))
        if len(result.objects) >= MAX_RESULTS:
            raise StoreError(f"reading {len(doc_ids)} documents hit Weaviate's limit of {MAX_RESULTS} objects per query")
        return current_versions([_row(o) for o in result.objects])

    def search(self, request: SearchRequest, access: AccessFilter) -> list[ScoredChunk]:
        if not isinstance(access, AccessFilter):
            raise StoreError("refusing to search without an access filter")
        from weaviate.classes.query import HybridFusion, MetadataQuery

        where = access.weaviate_filter()
        query = self._collection.query
        common = {"filters": where, "limit": request.k, "include_vector": [VECTOR]}
        vector = None if request.mode == "bm25" else request.query_vector()
        if request.mode == "dense":
            run = lambda: query.near_vector(near_vector=vector.tolist(), target_vector=VECTOR,  # noqa: E731
                                            return_metadata=MetadataQuery(distance=True), **common)
        elif request.mode == "bm25":
            run = lambda: query.bm25(query=request.text, query_properties=_SEARCHABLE,  # noqa: E731
                                     return_metadata=MetadataQuery(score=True), **common)
        else:
            fusion = HybridFusion.RANKED if self.options.fusion == "ranked" else HybridFusion.RELATIVE_SCORE
            run = lambda: query.hybrid(query=request.text, vector=vector.tolist(), target_vector=VECTOR,  # noqa: E731
                                       alpha=request.dense_weight, fusion_type=fusion, query_properties=_SEARCHABLE,
                                       return_metadata=MetadataQuery(score=True), **common)
        found = self._retrying("searching", run).objects
        if vector is None:
            vector = request.query_vector()
        hits = []
        for row in newest_version_only([_row(o) for o in found]):
            chunk = _to_chunk(row, with_vector=False)
            if not access.allows(chunk.scope):  # second line of defence: the filter decided
                continue
            similarity = float(vector @ np.asarray(row["vector"], dtype=np.float32))
            score = (1.0 - row["distance"]) if request.mode == "dense" else row["score"]
            hits.append(ScoredChunk(chunk=chunk, score=float(score), similarity=similarity))
        return hits

    # -- upkeep --------------------------------------------------------------------------------

    def optimize(self) -> None:
        """Nothing to do: Weaviate updates its indexes as it writes."""

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- errors and retries --------------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T], *, wrap: bool = True) -> T:
        """``call()``, again after a pause when Weaviate failed in a way that may pass (timed out,
        overloaded); every write lorebot makes is idempotent, so repeating one is safe.

        When weaviate-client has already spent its own retries on an unavailable server (about a
        minute for a search), calls fail at once for ``unavailable_pause_s``: during an outage each
        question gets its apology immediately instead of after another minute.
        """
        paused = self._unavailable_until - time.monotonic()
        if paused > 0:
            raise StoreError(f"Weaviate at {self.options.url} was unavailable moments ago; "
                             f"lorebot tries it again in {paused:.0f} s")
        for attempt in range(self.options.retries + 1):
            try:
                return call()
            except Exception as e:
                if attempt < self.options.retries and is_transient(e):
                    log.warning("Weaviate %s failed (%s); retrying", what, _reason(e))
                    time.sleep(self.options.retry_backoff_s * 2 ** attempt)
                    continue
                if gave_up_on_unavailable(e):
                    self._unavailable_until = time.monotonic() + self.options.unavailable_pause_s
                if not wrap:
                    raise
                raise StoreError(f"Weaviate {what} failed: {_reason(e)}") from e
        raise AssertionError("unreachable")


# --- Versions: which objects are the document -----------------------------------------------


def current_versions(rows: list[dict]) -> dict[str, list[dict]]:
    """Per document, the rows of its newest *complete* version, in chunk order.

    >>> rows = [{"properties": {"doc_id": "d", "version": v, "generation": g, "chunk_count": n, "position": p}}
    ...         for v, g, n, p in [("old", 1, 1, 0), ("new", 2, 2, 0)]]
    >>> [r["properties"]["version"] for r in current_versions(rows)["d"]]   # "new" is half-written
    ['old']
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        p = row["properties"]
        groups.setdefault((p["doc_id"], p["version"]), []).append(row)
    best: dict[str, tuple[int, list[dict]]] = {}
    for (doc_id, _), group in groups.items():
        expected = group[0]["properties"]["chunk_count"]
        if len({r["properties"]["position"] for r in group}) != expected:
            continue  # being written or being deleted
        generation = max(r["properties"]["generation"] for r in group)
        if doc_id not in best or generation > best[doc_id][0]:
            best[doc_id] = (generation, group)
    return {doc_id: sorted(group, key=lambda r: r["properties"]["position"]) for doc_id, (_, group) in best.items()}


def newest_version_only(rows: list[dict]) -> list[dict]:
    """Search hits without a document's older version beside its newer one (during a replacement).

    Ranked order is kept; per document only the hits of its newest generation among the hits stay.
    """
    newest: dict[str, int] = {}
    for row in rows:
        p = row["properties"]
        newest[p["doc_id"]] = max(newest.get(p["doc_id"], p["generation"]), p["generation"])
    return [r for r in rows if r["properties"]["generation"] == newest[r["properties"]["doc_id"]]]


# --- Rows and chunks ---------------------------------------------------------------------------


def _to_properties(c: StoredChunk, *, version: str, generation: int, count: int) -> dict[str, Any]:
    return {
        "chunk_id": c.chunk_id, "doc_id": c.doc_id, "position": c.position, "title": c.title,
        "heading_path": list(c.heading_path), "text": c.text, "source": c.source, "path": c.path,
        "scope": c.scope.as_list(), "content_hash": c.content_hash, "embedding_hash": c.embedding_hash,
        "version": version, "generation": generation, "chunk_count": count,
    }


def _row(obj) -> dict:
    """A returned object as plain data: properties, UUID, vector and search metadata."""
    vector = obj.vector.get(VECTOR) if isinstance(obj.vector, dict) else obj.vector
    metadata = obj.metadata
    return {
        "uuid": str(obj.uuid), "properties": dict(obj.properties), "vector": vector,
        "score": getattr(metadata, "score", None), "distance": getattr(metadata, "distance", None),
    }


def _to_chunk(row: dict, *, with_vector: bool = True) -> StoredChunk:
    p = row["properties"]
    vector = row.get("vector") if with_vector else None
    return StoredChunk(
        chunk_id=p["chunk_id"], doc_id=p["doc_id"], position=int(p["position"]), title=p.get("title") or "",
        heading_path=tuple(p.get("heading_path") or ()), text=p.get("text") or "", source=p.get("source") or "",
        path=p.get("path") or "", scope=Scope.from_labels(p["scope"]), content_hash=p.get("content_hash") or "",
        embedding_hash=p.get("embedding_hash") or "",
        vector=np.asarray(vector, dtype=np.float32) if vector is not None else None,
    )


# --- Schema ------------------------------------------------------------------------------------


def schema_problems(config, model_id: str, dimension: int) -> list[str]:
    """What makes an existing collection unusable: properties, vectors, embedding model."""
    problems = []
    have = {p.name: p.data_type for p in (config.properties or [])}
    for wanted in _properties():
        if wanted.name not in have:
            problems.append(f"property {wanted.name} is missing")
        elif have[wanted.name] != wanted.dataType:
            problems.append(f"property {wanted.name} is {have[wanted.name].value}, not {wanted.dataType.value}")
    vectors = getattr(config, "vector_config", None) or {}
    if VECTOR not in vectors:
        problems.append(f"it has no named vector '{VECTOR}' (vectors: {', '.join(vectors) or 'none'})")
    else:
        named = vectors[VECTOR]
        vectorizer = getattr(getattr(named, "vectorizer", None), "vectorizer", None)
        if vectorizer is not None and getattr(vectorizer, "value", vectorizer) != "none":
            problems.append(f"its vector '{VECTOR}' has the vectorizer {getattr(vectorizer, 'value', vectorizer)}; "
                            "lorebot provides its own vectors")
        distance = getattr(getattr(named, "vector_index_config", None), "distance_metric", None)
        if distance is not None and getattr(distance, "value", distance) != "cosine":
            problems.append(f"its vector index measures {getattr(distance, 'value', distance)}, not cosine")
    try:
        described = json.loads(config.description or "{}")
    except ValueError:
        described = {}
    if described.get("embedding_model") != model_id or described.get("dimension") != dimension:
        problems.append(
            f"it was built with embedding model '{described.get('embedding_model', 'unknown')}', "
            f"but '{model_id}' is configured")
    return problems


# --- Errors ------------------------------------------------------------------------------------


class _NotReadyYet(Exception):
    """Weaviate is reachable but not ready, or its gRPC port does not answer (yet): worth waiting for."""


def _wait_for_grpc(host: str, port: int, *, secure: bool, timeout_s: float) -> None:
    """Open a gRPC connection to Weaviate, or fail within ``timeout_s`` (the client itself would
    retry an unreachable port for about a minute on the first search)."""
    import grpc

    target = f"{host}:{port}"
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as e:
        raise _NotReadyYet(f"its gRPC port {port} did not answer within {timeout_s:g}s") from e
    finally:
        channel.close()


def is_transient(error: BaseException) -> bool:
    """Worth another try: timed out, overloaded, a proxy's 502/503/504, or still starting up.

    Not UNAVAILABLE from gRPC: weaviate-client already retried that itself, with exponential
    backoff (about a minute for a search), before it raised.
    """
    import grpc
    from weaviate.exceptions import (
        UnexpectedStatusCodeError, WeaviateConnectionError, WeaviateRetryError, WeaviateStartUpError,
        WeaviateTimeoutError,
    )

    retry_codes = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, WeaviateRetryError):
            return False
        if isinstance(seen, (WeaviateConnectionError, WeaviateTimeoutError, WeaviateStartUpError, _NotReadyYet)):
            return True
        if isinstance(seen, UnexpectedStatusCodeError):
            return seen.status_code in (429, 502, 503, 504)
        if isinstance(seen, grpc.RpcError) and callable(getattr(seen, "code", None)):
            return seen.code() in retry_codes
        seen = seen.__cause__ or seen.__context__
    return False


def gave_up_on_unavailable(error: BaseException) -> bool:
    """weaviate-client retried a gRPC UNAVAILABLE until it gave up (the server is down or unreachable)."""
    from weaviate.exceptions import WeaviateRetryError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, WeaviateRetryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(error: BaseException) -> str:
    """The first line of an error, short enough for a log line or a CLI message."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "…"


def _connect_message(error: BaseException, where: str) -> str:
    from weaviate.exceptions import AuthenticationFailedError, UnexpectedStatusCodeError

    status = getattr(error, "status_code", None)
    if isinstance(error, AuthenticationFailedError) or (isinstance(error, UnexpectedStatusCodeError) and status in (401, 403)):
        return f"{where} refused the credentials: check WEAVIATE_API_KEY"
    return (f"cannot reach {where}: is it running, and are WEAVIATE_URL and WEAVIATE_GRPC_PORT right? "
            f"({_reason(error)})")
