"""A local Weaviate for tests: a REST server and a gRPC server that the real ``weaviate-client`` v4 talks to.

It plays the part of a single-node Weaviate 1.32 closely enough for a vector store's code paths:
the connect-time checks, the schema endpoints, gRPC ``BatchObjects``/``BatchDelete``/``Search``/
``Aggregate`` with real storage, filters, exact vector search, BM25 and hybrid fusion, and the
object REST endpoints. Every request is recorded so tests can assert what the client sent, and
faults can be injected (failing calls, per-object batch errors, slowness).

    with FakeWeaviate() as fake:
        client = weaviate.connect_to_custom(
            http_host="127.0.0.1", http_port=fake.http_port, http_secure=False,
            grpc_host="127.0.0.1", grpc_port=fake.grpc_port, grpc_secure=False)
        chunks = client.collections.create("Chunk", properties=[Property(name="text", data_type=DataType.TEXT)],
                                           vector_config=Configure.Vectors.self_provided())
        chunks.data.insert_many([DataObject(properties={"text": "hello"}, vector=[0.1, 0.2])])
        assert fake.objects("Chunk")[0]["properties"] == {"text": "hello"}
        assert fake.grpc_requests("BatchObjects")[0].objects[0].properties.non_ref_properties["text"] == "hello"
        client.close()

Only 127.0.0.1 is ever bound. ``FakeWeaviate(...)`` options:

* ``api_key``: when set, every REST call (except ``/v1/.well-known/*``) and every gRPC call except the
  health check must carry ``Authorization: Bearer <key>``, else HTTP 401 / ``UNAUTHENTICATED``.
  ``/v1/.well-known/openid-configuration`` is always 404 (no OIDC), as on an API-key Weaviate.
* ``version``: what ``/v1/meta`` reports. The client picks wire formats from it: below 1.29 it
  aggregates over GraphQL, which this fake does not serve.
* ``auto_schema`` (default True, like Weaviate): a batch into a missing collection creates it, and
  unknown properties are added with an inferred type. False: per-object errors instead.
* ``default_limit`` (10) and ``max_results`` (10000): Weaviate's ``QUERY_DEFAULTS_LIMIT`` (used
  when a search sends no limit) and ``QUERY_MAXIMUM_RESULTS`` (``offset + limit`` above it is an
  error; a ``BatchDelete`` deletes at most that many objects per call, as Weaviate does).
* ``hybrid_candidates`` (100): how many results each half of a hybrid search contributes before
  fusion (at least ``offset + limit``), like Weaviate's hybrid default limit.
* ``strict_cursor`` (True): like Weaviate, a search with ``after`` may not also have filters,
  an offset, a sort, or a search clause (``INVALID_ARGUMENT``). False: allowed, filters applied.
* ``block_version_check`` (True): while any fake runs, the client's connect-time PyPI lookup
  (``_ConnectionBase._check_package_version``, a GET to pypi.org) is patched to a no-op so
  that tests never leave 127.0.0.1.
* ``instant_client_retries`` (True): while any fake runs, the client's *own* retry of gRPC
  ``UNAVAILABLE`` (``weaviate.retry._Retry``) does not sleep. It still retries: one Search or
  Aggregate call makes up to 6 attempts (sleeping 1+2+4+8+16+32 s for real), insert_many's
  BatchObjects up to 4, BatchDelete and REST calls 1. So ``fail_next("Search", times=n)`` with
  UNAVAILABLE is absorbed by the client when n < 6; use another code to fail at once.

Attributes and methods:

* ``http_port``, ``grpc_port``, ``url`` (``http://127.0.0.1:<http_port>``).
* ``consistency_levels``: "ONE"/"QUORUM"/"ALL" -> the proto enum value a request carries in
  ``consistency_level`` (``HasField("consistency_level")`` is false when none was set).
* ``requests``: every :class:`Request`, oldest first (``kind`` "rest"/"grpc", ``method`` (HTTP verb,
  or the gRPC method name: "Search", "BatchObjects", "BatchDelete", "Aggregate", "Check" for the
  health check, ...), ``path`` (REST, without query string), ``params`` (REST query), ``body``
  (parsed JSON, or the protobuf request message), ``headers`` (lower-cased names), ``status``
  (HTTP status, or the gRPC status code name)). ``grpc_requests(name)`` gives the protobuf messages
  of one gRPC method; ``rest_requests(method=None, path_prefix=None)``; ``reset_requests()``.
* ``collections``: name -> the schema JSON exactly as the client sent it; ``schema(name)``: the
  schema as served (defaults filled in like Weaviate, first letter of the class capitalised and
  of property names lower-cased).
* ``objects(collection)``: stored objects, oldest write first, as dicts with ``uuid``, ``properties``
  (plain Python), ``vector`` (the single / "default" vector or None) and ``vectors`` (name -> list).
  ``put_object(collection, properties, vector=None, uuid=None)`` seeds one directly (not recorded).
* Faults: ``fail_objects(predicate, message=...)`` - BatchObjects objects whose properties dict
  makes ``predicate`` true get a per-object error and are not stored (until ``reset_faults``);
  ``fail_next(target, code=UNAVAILABLE, times=1, message=..., status=503)`` - the next ``times``
  calls of a gRPC method name, or of REST paths starting with ``target`` when it starts with "/",
  fail (gRPC with ``code``, REST with HTTP ``status``); ``delay(target, seconds)`` slows every
  later matching call; ``reset_faults()`` clears all three.

Semantics and simplifications (documented differences from Weaviate):

* Searches are exact (no HNSW), always over the objects that pass the filter: filters are applied
  before ranking, so nothing outside a filter is ever ranked, scored or returned. BM25 statistics
  (N, document frequencies, average lengths) are collection-wide, as in Weaviate.
* BM25 is BM25 per property with ``k1``/``b`` from the collection's ``invertedIndexConfig``
  (default 1.2/0.75), summed over the searched properties (``"title^2"`` boosts work), with
  Weaviate's tokenizations (word: lower-cased runs of letters/digits; lowercase; whitespace;
  field: the whole trimmed value) and the ``en`` stopword preset removed from word-tokenized
  queries. Only objects with a positive score are returned. ``And``/minimum-match operators work.
* Hybrid follows Weaviate's ``hybrid`` searcher: keyword half weighted ``1 - alpha``, vector half
  weighted ``alpha`` with ``1 - distance`` as its score; relativeScoreFusion (min-max normalised,
  all-equal scores count as 1) or rankedFusion (``weight / (60 + rank)``); alpha 0 is keyword
  only, alpha 1 vector only; ``max_vector_distance`` cuts both halves. Default fusion
  (unspecified) is relativeScore, default alpha (when sent via ``alpha_param``) 0.75.
* Text filters honour the property's tokenization: ``Equal`` on a word-tokenized property is true
  when all the value's tokens occur; ``field`` compares whole values. On arrays, ``Equal`` and
  comparisons are true when any element matches. ``NotEqual``/``ContainsNone`` are the negations
  (so they match objects without the property). ``_id`` and ``len(prop)`` targets work; reference,
  geo and timestamp filters are rejected with ``INVALID_ARGUMENT``.
* Unfiltered ``fetch_objects`` returns objects in UUID order (Weaviate's object-bucket order);
  filtered ones in write order (Weaviate's doc-id order); ``after`` pages in UUID order.
* ``autocut``, group-by, generative, rerank, references, multi-tenancy, near-text/media and
  aggregation metrics are not supported (ignored or ``UNIMPLEMENTED``). ``Aggregate`` answers
  ``objects_count`` (with filters). Vector lengths are checked like Weaviate (per-object error).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import math
import re
import struct
import threading
import time
import uuid as uuid_lib
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import grpc
import numpy as np
from google.protobuf import json_format

from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

log = logging.getLogger(__name__)

GRPC_MAX_MESSAGE_SIZE = 104_858_000  # Weaviate's default GRPC_MAX_MESSAGE_SIZE, reported in /v1/meta

# Weaviate's "en" stopword preset (usecases/.../stopwords/presets.go).
EN_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)

_TEXT_TYPES = frozenset({"text", "text[]", "uuid", "uuid[]", "date", "date[]"})
_SEARCHABLE_TYPES = frozenset({"text", "text[]"})
_WORD_RE = re.compile(r"[^\W_]+")
_F = base_pb2.Filters
_COMPARISONS: dict[int, Callable[[Any, Any], bool]] = {
    _F.OPERATOR_GREATER_THAN: lambda a, b: a > b, _F.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
    _F.OPERATOR_LESS_THAN: lambda a, b: a < b, _F.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
}


# --------------------------------------------------------------------------- recorded requests


@dataclass(frozen=True)
class Request:
    """One request the fake received, recorded just before it was answered.

    ``body`` is the parsed JSON body of a REST call (None when empty) or the protobuf request
    message of a gRPC call. ``status`` is the HTTP status or the gRPC status code name ("OK").
    """

    kind: str
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    at: float = 0.0
    status: int | str = 200


@dataclass
class _Fault:
    code: grpc.StatusCode
    status: int
    message: str
    remaining: int


class _Abort(Exception):
    """An error answer: a gRPC status code (and the HTTP status used when it happens over REST)."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def _bad(message: str) -> _Abort:
    return _Abort(grpc.StatusCode.INVALID_ARGUMENT, message, 422)


# --------------------------------------------------------------------------- schema


def _cap_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _hnsw_defaults(distance: str = "cosine") -> dict:
    return {
        "skip": False, "cleanupIntervalSeconds": 300, "maxConnections": 32, "efConstruction": 128, "ef": -1,
        "dynamicEfMin": 100, "dynamicEfMax": 500, "dynamicEfFactor": 8, "vectorCacheMaxObjects": 1_000_000_000_000,
        "flatSearchCutoff": 40000, "distance": distance, "filterStrategy": "sweeping",
        "pq": {"enabled": False, "bitCompression": False, "segments": 0, "centroids": 256, "trainingLimit": 100000,
               "encoder": {"type": "kmeans", "distribution": "log-normal"}},
        "bq": {"enabled": False}, "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
        "multivector": {"enabled": False, "aggregation": "maxSim",
                        "muvera": {"enabled": False, "ksim": 4, "dprojections": 16, "repetitions": 10}},
    }


def _flat_defaults(distance: str = "cosine") -> dict:
    return {"distance": distance, "vectorCacheMaxObjects": 1_000_000_000_000,
            "pq": {"enabled": False}, "bq": {"enabled": False}, "sq": {"enabled": False},
            "multivector": {"enabled": False}}


def _index_config(index_type: str, given: dict | None) -> dict:
    given = dict(given or {})
    distance = given.get("distance", "cosine")
    if index_type == "flat":
        base = _flat_defaults(distance)
    elif index_type == "dynamic":
        base = {"distance": distance, "threshold": 10000,
                "hnsw": _hnsw_defaults(distance), "flat": _flat_defaults(distance)}
    else:
        base = _hnsw_defaults(distance)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def _property_defaults(prop: dict) -> dict:
    out = {k: v for k, v in prop.items() if k not in ("skip_vectorization", "vectorize_property_name")}
    out["name"] = _lower_first(str(out["name"]))
    data_type = out.get("dataType") or ["text"]
    out["dataType"] = list(data_type)
    primitive = data_type[0][:1].islower()
    searchable = data_type[0] in _SEARCHABLE_TYPES
    if primitive:
        out.setdefault("indexFilterable", True)
        out.setdefault("indexSearchable", searchable)
        out.setdefault("indexRangeFilters", False)
        if searchable:
            out.setdefault("tokenization", "word")
        else:
            out.pop("tokenization", None)
    return out


def _normalize_class(body: dict) -> dict:
    """The class JSON as Weaviate 1.32 serves it back: the given settings with defaults filled in."""
    schema = copy.deepcopy(body)
    schema["class"] = _cap_first(str(schema.get("class", "")))
    schema["properties"] = [_property_defaults(p) for p in schema.get("properties") or []]
    inverted = schema.get("invertedIndexConfig") or {}
    stopwords = {"preset": "en", "additions": None, "removals": None, **(inverted.get("stopwords") or {})}
    schema["invertedIndexConfig"] = {
        "cleanupIntervalSeconds": 60, "indexNullState": False, "indexPropertyLength": False,
        "indexTimestamps": False, "usingBlockMaxWAND": True,
        **inverted,
        "bm25": {"b": 0.75, "k1": 1.2, **(inverted.get("bm25") or {})},
        "stopwords": stopwords,
    }
    schema["multiTenancyConfig"] = {"enabled": False, "autoTenantCreation": False, "autoTenantActivation": False,
                                    **(schema.get("multiTenancyConfig") or {})}
    schema["replicationConfig"] = {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution",
                                   **(schema.get("replicationConfig") or {})}
    sharding = {"virtualPerPhysical": 128, "desiredCount": 1, "desiredVirtualCount": 128, "key": "_id",
                "strategy": "hash", "function": "murmur3", **(schema.get("shardingConfig") or {})}
    sharding["actualCount"] = sharding["desiredCount"]
    sharding["actualVirtualCount"] = sharding["desiredVirtualCount"]
    schema["shardingConfig"] = sharding
    schema.setdefault("moduleConfig", {})
    if schema.get("vectorConfig"):
        for name, vc in schema["vectorConfig"].items():
            vc = dict(vc)
            vc["vectorizer"] = vc.get("vectorizer") or {"none": {}}
            vc["vectorIndexType"] = vc.get("vectorIndexType") or "hnsw"
            vc["vectorIndexConfig"] = _index_config(vc["vectorIndexType"], vc.get("vectorIndexConfig"))
            schema["vectorConfig"][name] = vc
        schema.pop("vectorizer", None)
        schema.pop("vectorIndexType", None)
        schema.pop("vectorIndexConfig", None)
    else:
        schema["vectorizer"] = schema.get("vectorizer") or "none"
        schema["vectorIndexType"] = schema.get("vectorIndexType") or "hnsw"
        schema["vectorIndexConfig"] = _index_config(schema["vectorIndexType"], schema.get("vectorIndexConfig"))
    return schema


# --------------------------------------------------------------------------- tokenization and values


def tokenize(text: str, tokenization: str | None) -> list[str]:
    """Weaviate's tokenizations, closely enough for BM25 and filters.

    >>> tokenize("Hello, World_wide web!", "word")
    ['hello', 'world', 'wide', 'web']
    >>> tokenize("  Exact Value ", "field")
    ['Exact Value']
    """
    if tokenization == "field":
        text = text.strip()
        return [text] if text else []
    if tokenization == "whitespace":
        return text.split()
    if tokenization == "lowercase":
        return text.lower().split()
    if tokenization == "trigram":
        joined = "".join(_WORD_RE.findall(text.lower()))
        return [joined[i:i + 3] for i in range(max(len(joined) - 2, 0))] or ([joined] if joined else [])
    return _WORD_RE.findall(text.lower())


def _canonical_uuid(value: Any) -> str:
    try:
        return str(uuid_lib.UUID(str(value)))
    except ValueError:
        raise _bad(f"id '{value}' is not a valid uuid") from None


def _unpack_f32(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def _infer_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        if not value:
            return None
        inner = _infer_type(value[0])
        return f"{inner}[]" if inner and not inner.endswith("[]") else None
    return None


def _coerce(value: Any, data_type: str, prop: str, collection: str) -> Any:
    """The value as stored for a property of ``data_type``; raises ValueError like Weaviate's validation."""
    base, is_array = data_type.removesuffix("[]"), data_type.endswith("[]")
    if is_array:
        if not isinstance(value, list):
            raise ValueError(f"invalid {data_type} property '{prop}' on class '{collection}': not an array, "
                             f"but {type(value).__name__}")
        return [_coerce(v, base, prop, collection) for v in value]
    if base in ("text", "uuid", "date", "blob"):
        if not isinstance(value, str):
            raise ValueError(f"invalid {base} property '{prop}' on class '{collection}': not a string, "
                             f"but {type(value).__name__}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"invalid integer property '{prop}' on class '{collection}': {value!r}")
        return int(value)
    if base == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"invalid number property '{prop}' on class '{collection}': {value!r}")
        return float(value)
    if base == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"invalid boolean property '{prop}' on class '{collection}': {value!r}")
        return value
    return value


def _properties_from_batch(props: batch_pb2.BatchObject.Properties) -> dict[str, Any]:
    """Plain Python properties from a BatchObject (non_ref Struct plus the typed arrays)."""
    out: dict[str, Any] = {}
    if props.HasField("non_ref_properties"):
        for key, value in json_format.MessageToDict(props.non_ref_properties).items():
            if value is not None:
                out[key] = value
    for arr in props.text_array_properties:
        out[arr.prop_name] = list(arr.values)
    for arr in props.int_array_properties:
        out[arr.prop_name] = [int(v) for v in arr.values]
    for arr in props.boolean_array_properties:
        out[arr.prop_name] = [bool(v) for v in arr.values]
    for arr in props.number_array_properties:
        if arr.values_bytes:
            out[arr.prop_name] = list(struct.unpack(f"<{len(arr.values_bytes) // 8}d", arr.values_bytes))
        else:
            out[arr.prop_name] = [float(v) for v in arr.values]
    for obj in props.object_properties:
        out[obj.prop_name] = json_format.MessageToDict(obj.value.non_ref_properties)
    for arr in props.object_array_properties:
        out[arr.prop_name] = [json_format.MessageToDict(v.non_ref_properties) for v in arr.values]
    for name in props.empty_list_props:
        out[name] = []
    if props.single_target_ref_props or props.multi_target_ref_props:
        raise ValueError("fake weaviate: cross-references are not supported")
    return out


def _vectors_from_proto(vector_bytes: bytes, vector: Any, vectors: Any) -> tuple[list[float] | None,
                                                                                    dict[str, list[float]]]:
    """(the unnamed vector, named vectors) from any of the client's encodings."""
    unnamed = _unpack_f32(vector_bytes) if vector_bytes else (list(vector) if len(vector) else None)
    named: dict[str, list[float]] = {}
    for vec in vectors:
        if vec.type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
            raise _bad("fake weaviate: multi-vectors are not supported")
        values = _unpack_f32(vec.vector_bytes)
        if vec.name:
            named[vec.name] = values
        else:
            unnamed = values
    return unnamed, named


# --------------------------------------------------------------------------- storage


@dataclass
class _Object:
    uuid: str
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray]
    created: int
    updated: int
    seq: int
    tf: dict[str, Counter] = field(default_factory=dict)
    length: dict[str, int] = field(default_factory=dict)


class _Collection:
    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.objects: dict[str, _Object] = {}
        self.dims: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.schema["class"]

    @property
    def named_vectors(self) -> bool:
        return bool(self.schema.get("vectorConfig"))

    def vector_names(self) -> list[str]:
        return list(self.schema["vectorConfig"]) if self.named_vectors else ["default"]

    def distance_metric(self, name: str) -> str:
        if self.named_vectors:
            return self.schema["vectorConfig"][name]["vectorIndexConfig"].get("distance", "cosine")
        return self.schema["vectorIndexConfig"].get("distance", "cosine")

    def prop(self, name: str) -> dict | None:
        for p in self.schema["properties"]:
            if p["name"] == name:
                return p
        return None

    def data_type(self, name: str) -> str | None:
        p = self.prop(name)
        return p["dataType"][0] if p else None

    def tokenization(self, name: str) -> str | None:
        p = self.prop(name)
        return p.get("tokenization") if p else None

    def bm25_params(self) -> tuple[float, float]:
        bm25 = self.schema["invertedIndexConfig"]["bm25"]
        return float(bm25.get("k1", 1.2)), float(bm25.get("b", 0.75))

    def stopwords(self) -> frozenset[str]:
        sw = self.schema["invertedIndexConfig"]["stopwords"]
        words = set(EN_STOPWORDS) if sw.get("preset", "en") == "en" else set()
        words |= set(sw.get("additions") or [])
        words -= set(sw.get("removals") or [])
        return frozenset(words)

    def resolve_vector_name(self, names: list[str] | None) -> str:
        available = self.vector_names()
        if names:
            if names[0] not in available:
                raise _bad(f"target vector '{names[0]}' not found in class '{self.name}'")
            return names[0]
        if len(available) != 1:
            raise _bad(f"class '{self.name}' has multiple vectors; a target vector must be given")
        return available[0]


# --------------------------------------------------------------------------- the fake


def deployed_version() -> str:
    """The Weaviate version ``deploy/docker-compose.yml`` pins: tests make the fake report it, since the
    client picks its wire formats by server version."""
    compose = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
    return re.search(r"semitechnologies/weaviate:(\d+\.\d+\.\d+)", compose.read_text()).group(1)


class FakeWeaviate:
    """A Weaviate on ``127.0.0.1`` (REST and gRPC) in background threads; see the module docstring."""

    def __init__(self, *, api_key: str | None = None, version: str = "1.32.0", auto_schema: bool = True,
                 default_limit: int = 10, max_results: int = 10_000, hybrid_candidates: int = 100,
                 strict_cursor: bool = True, block_version_check: bool = True, instant_client_retries: bool = True,
                 grpc_workers: int = 8) -> None:
        self.api_key = api_key
        self.version = version
        self.auto_schema = auto_schema
        self.default_limit = default_limit
        self.max_results = max_results
        self.hybrid_candidates = hybrid_candidates
        self.strict_cursor = strict_cursor
        self.block_version_check = block_version_check
        self.instant_client_retries = instant_client_retries
        self._grpc_workers = grpc_workers
        self._lock = threading.RLock()
        self._requests: list[Request] = []
        self._created: dict[str, dict] = {}
        self._collections: dict[str, _Collection] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._object_faults: list[tuple[Callable[[dict], bool], str]] = []
        self._seq = 0
        self._http: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._grpc_port: int | None = None
        self._patches: list[type[_ClientPatch]] = []

    # proto enum values of ``consistency_level`` by name, to compare with recorded requests
    consistency_levels = {"ONE": base_pb2.CONSISTENCY_LEVEL_ONE, "QUORUM": base_pb2.CONSISTENCY_LEVEL_QUORUM,
                          "ALL": base_pb2.CONSISTENCY_LEVEL_ALL}

    # ---- lifecycle

    def start(self) -> FakeWeaviate:
        self._http = _HTTPServer(self)
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                             name="fake-weaviate-http", daemon=True)
        self._http_thread.start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._grpc_workers,
                                                        thread_name_prefix="fake-weaviate-grpc"),
                             options=[("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_SIZE),
                                      ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_SIZE),
                                      ("grpc.so_reuseport", 0)])
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), server)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(
                self._health_check,
                request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString),
        }),))
        self._grpc_port = server.add_insecure_port("127.0.0.1:0")
        if not self._grpc_port:
            raise RuntimeError("fake weaviate: could not bind a gRPC port on 127.0.0.1")
        server.start()
        self._grpc = server
        for wanted, patch in ((self.block_version_check, _NoVersionCheck),
                              (self.instant_client_retries, _InstantClientRetries)):
            if wanted:
                patch.acquire()
                self._patches.append(patch)
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(timeout=5)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
        while self._patches:
            self._patches.pop().release()
        self._http = self._http_thread = self._grpc = None

    def __enter__(self) -> FakeWeaviate:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def http_port(self) -> int:
        if self._http is None:
            raise RuntimeError("FakeWeaviate is not started")
        return int(self._http.server_address[1])

    @property
    def grpc_port(self) -> int:
        if self._grpc_port is None or self._grpc is None:
            raise RuntimeError("FakeWeaviate is not started")
        return self._grpc_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # ---- recorded requests

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def grpc_requests(self, method: str) -> list[Any]:
        """The protobuf request messages of one gRPC method ("Search", "BatchObjects", ...), in order."""
        with self._lock:
            return [r.body for r in self._requests if r.kind == "grpc" and r.method == method]

    def rest_requests(self, method: str | None = None, path_prefix: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if r.kind == "rest" and (method is None or r.method == method)
                    and (path_prefix is None or r.path.startswith(path_prefix))]

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    # ---- state

    @property
    def collections(self) -> dict[str, dict]:
        """Collection name -> the schema JSON as the client sent it when creating it."""
        with self._lock:
            return {name: copy.deepcopy(body) for name, body in self._created.items()}

    def schema(self, collection: str) -> dict:
        """The collection's schema as served by ``GET /v1/schema/{name}``."""
        with self._lock:
            return copy.deepcopy(self._get_collection(collection).schema)

    def objects(self, collection: str) -> list[dict]:
        with self._lock:
            coll = self._collections.get(_cap_first(collection))
            if coll is None:
                return []
            return [self._object_dict(coll, o) for o in sorted(coll.objects.values(), key=lambda o: o.seq)]

    def put_object(self, collection: str, properties: dict, vector: list[float] | dict | None = None,
                   uuid: str | None = None) -> str:
        """Store one object directly (not recorded); returns its uuid."""
        with self._lock:
            coll = self._get_or_create(collection)
            named = vector if isinstance(vector, dict) else {}
            unnamed = None if isinstance(vector, dict) else vector
            return self._store(coll, uuid or str(uuid_lib.uuid4()), dict(properties), unnamed, named)

    @staticmethod
    def _object_dict(coll: _Collection, obj: _Object) -> dict:
        vectors = {k: [float(x) for x in v] for k, v in obj.vectors.items()}
        single = vectors.get("default") if "default" in vectors else (
            next(iter(vectors.values())) if len(vectors) == 1 else None)
        return {"uuid": obj.uuid, "properties": copy.deepcopy(obj.properties), "vector": single,
                "vectors": vectors, "collection": coll.name}

    # ---- faults

    def fail_objects(self, predicate: Callable[[dict], bool], message: str = "fake weaviate: injected object error"
                     ) -> None:
        with self._lock:
            self._object_faults.append((predicate, message))

    def fail_next(self, target: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, times: int = 1,
                  message: str = "fake weaviate: injected fault", status: int = 503) -> None:
        """The next ``times`` calls of a gRPC method (``"Search"``) or REST path prefix (``"/v1/schema"``) fail.

        The client itself retries gRPC ``UNAVAILABLE`` (6 attempts per Search/Aggregate call, 4 per
        BatchObjects, see ``instant_client_retries``); use another code for an immediate failure.
        """
        with self._lock:
            self._faults.setdefault(target, []).append(_Fault(code, status, message, times))

    def delay(self, target: str, seconds: float) -> None:
        """Every later call of a gRPC method or REST path prefix first sleeps ``seconds`` (0 clears)."""
        with self._lock:
            if seconds:
                self._delays[target] = seconds
            else:
                self._delays.pop(target, None)

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._object_faults.clear()

    def _take_fault(self, kind: str, name: str) -> _Fault | None:
        with self._lock:
            for target, queue in self._faults.items():
                hit = name.startswith(target) if kind == "rest" and target.startswith("/") else (
                    kind == "grpc" and name == target)
                if hit and queue:
                    fault = queue[0]
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.pop(0)
                    return fault
        return None

    def _delay_for(self, kind: str, name: str) -> float:
        with self._lock:
            return max((s for t, s in self._delays.items()
                        if (name.startswith(t) if kind == "rest" and t.startswith("/") else
                            kind == "grpc" and name == t)), default=0.0)

    # ---- request plumbing

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    def _health_check(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._grpc_call("Check", request, context, lambda r: health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING), auth=False)

    def _grpc_call(self, method: str, request: Any, context: grpc.ServicerContext,
                   handler: Callable[[Any], Any], auth: bool = True) -> Any:
        headers = {k.lower(): v if isinstance(v, str) else repr(v) for k, v in context.invocation_metadata()}
        at = time.time()
        wait = self._delay_for("grpc", method)
        if wait:
            time.sleep(wait)
        try:
            if auth and not self._authorized(headers):
                raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "unauthorized: invalid or missing api key", 401)
            fault = self._take_fault("grpc", method)
            if fault is not None:
                raise _Abort(fault.code, fault.message)
            reply = handler(request)
        except _Abort as e:
            self._record(Request("grpc", method, "", request, headers, at=at, status=e.code.name))
            context.abort(e.code, e.message)
        except Exception as e:  # a bug in the fake: fail the call loudly instead of hanging the client
            log.exception("fake weaviate failed on %s", method)
            self._record(Request("grpc", method, "", request, headers, at=at, status="INTERNAL"))
            context.abort(grpc.StatusCode.INTERNAL, f"fake weaviate failed: {e!r}")
        self._record(Request("grpc", method, "", request, headers, at=at, status="OK"))
        return reply

    def _handle_http(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
                     ) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path, params = parts.path, dict(parse_qsl(parts.query))
        at = time.time()
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode(errors="replace")
        wait = self._delay_for("rest", path)
        if wait:
            time.sleep(wait)
        status, payload = self._route_http(method, path, params, headers, body)
        self._record(Request("rest", method, path, body, headers, params, at, status))
        return status, payload

    def _route_http(self, method: str, path: str, params: dict, headers: dict, body: Any) -> tuple[int, Any]:
        if path.startswith("/v1/.well-known/"):
            if path in ("/v1/.well-known/ready", "/v1/.well-known/live"):
                return 200, None
            return 404, None
        if not self._authorized(headers):
            return 401, {"code": 401, "message": "unauthorized: invalid or missing api key"}
        fault = self._take_fault("rest", path)
        if fault is not None:
            return fault.status, {"error": [{"message": fault.message}]}
        try:
            with self._lock:
                return self._rest(method, path, params, body)
        except _Abort as e:
            return e.http_status, {"error": [{"message": e.message}]}

    # ---- REST endpoints

    def _rest(self, method: str, path: str, params: dict, body: Any) -> tuple[int, Any]:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if segments[:1] != ["v1"]:
            return 404, {"code": 404, "message": f"path {path} was not found"}
        rest = segments[1:]
        if rest == ["meta"] and method == "GET":
            return 200, {"hostname": "http://[::]:8080", "modules": {}, "version": self.version,
                         "grpcMaxMessageSize": GRPC_MAX_MESSAGE_SIZE}
        if rest == ["schema"]:
            if method == "GET":
                return 200, {"classes": [copy.deepcopy(c.schema) for c in self._collections.values()]}
            if method == "POST":
                return self._create_collection(body)
        if len(rest) >= 2 and rest[0] == "schema":
            return self._rest_schema(method, rest[1], rest[2:], body)
        if rest == ["objects"] and method == "POST":
            return self._rest_insert(body)
        if len(rest) == 3 and rest[0] == "objects":
            return self._rest_object(method, rest[1], rest[2], params, body)
        if rest == ["graphql"]:
            return 200, {"errors": [{"message": "fake weaviate: GraphQL is not implemented (use server "
                                                "version >= 1.29 so the client uses gRPC)"}]}
        return 404, {"code": 404, "message": f"path {path} was not found"}

    def _create_collection(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("class"):
            raise _bad("class name is required")
        schema = _normalize_class(body)
        name = schema["class"]
        if name in self._collections:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f'class name "{name}" already exists', 422)
        self._created[name] = copy.deepcopy(body)
        self._collections[name] = _Collection(schema)
        return 200, copy.deepcopy(schema)

    def _rest_schema(self, method: str, name: str, sub: list[str], body: Any) -> tuple[int, Any]:
        name = _cap_first(name)
        coll = self._collections.get(name)
        if not sub:
            if method == "GET":
                return (200, copy.deepcopy(coll.schema)) if coll else (404, None)
            if method == "DELETE":
                self._collections.pop(name, None)
                self._created.pop(name, None)
                return 200, None
            if method == "PUT" and coll is not None:
                updated = _normalize_class({**coll.schema, **(body or {}), "class": name})
                coll.schema = updated
                return 200, copy.deepcopy(updated)
        if coll is None:
            return 404, {"error": [{"message": f"class {name} not found"}]}
        if sub == ["properties"] and method == "POST":
            prop = _property_defaults(body or {})
            if coll.prop(prop["name"]) is not None:
                raise _bad(f"property with name '{prop['name']}' already exists")
            coll.schema["properties"].append(prop)
            return 200, prop
        if sub == ["shards"] and method == "GET":
            count = coll.schema["shardingConfig"]["actualCount"]
            return 200, [{"name": f"shard{i}", "status": "READY", "vectorQueueSize": 0} for i in range(count)]
        return 404, {"code": 404, "message": "not found"}

    def _rest_vectors(self, body: dict) -> tuple[list[float] | None, dict[str, list[float]]]:
        return body.get("vector"), dict(body.get("vectors") or {})

    def _rest_insert(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _bad("object body required")
        coll = self._get_or_create(body.get("class", ""))
        uid = _canonical_uuid(body.get("id") or uuid_lib.uuid4())
        if uid in coll.objects:
            raise _bad(f"id '{uid}' already exists")
        unnamed, named = self._rest_vectors(body)
        try:
            self._store(coll, uid, dict(body.get("properties") or {}), unnamed, named)
        except ValueError as e:
            raise _bad(str(e)) from None
        return 200, self._rest_object_json(coll, coll.objects[uid], include_vector=True)

    def _rest_object(self, method: str, cls: str, uid: str, params: dict, body: Any) -> tuple[int, Any]:
        coll = self._collections.get(_cap_first(cls))
        uid = _canonical_uuid(uid)
        obj = coll.objects.get(uid) if coll else None
        if method in ("GET", "HEAD"):
            if obj is None:
                return 404, None
            if method == "HEAD":
                return 204, None
            return 200, self._rest_object_json(coll, obj, include_vector="vector" in params.get("include", ""))
        if method == "DELETE":
            if obj is None:
                return 404, None
            del coll.objects[uid]
            return 204, None
        if method in ("PUT", "PATCH"):
            if coll is None or (obj is None and method == "PATCH"):
                return 404, {"error": [{"message": f"object {uid} not found"}]}
            body = body or {}
            unnamed, named = self._rest_vectors(body)
            props = dict(body.get("properties") or {})
            if method == "PATCH" and obj is not None:
                props = {**obj.properties, **props}
                if unnamed is None and not named:
                    named = {k: [float(x) for x in v] for k, v in obj.vectors.items()}
            try:
                self._store(coll, uid, props, unnamed, named, created=obj.created if obj else None)
            except ValueError as e:
                raise _bad(str(e)) from None
            return (204, None) if method == "PATCH" else (200, self._rest_object_json(coll, coll.objects[uid], True))
        return 405, None

    @staticmethod
    def _rest_object_json(coll: _Collection, obj: _Object, include_vector: bool) -> dict:
        out: dict[str, Any] = {"class": coll.name, "id": obj.uuid, "properties": copy.deepcopy(obj.properties),
                               "creationTimeUnix": obj.created, "lastUpdateTimeUnix": obj.updated}
        if include_vector:
            if coll.named_vectors:
                out["vectors"] = {k: [float(x) for x in v] for k, v in obj.vectors.items()}
            elif "default" in obj.vectors:
                out["vector"] = [float(x) for x in obj.vectors["default"]]
        return out

    # ---- storage

    def _get_collection(self, name: str) -> _Collection:
        coll = self._collections.get(_cap_first(name))
        if coll is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"could not find class {name} in schema", 404)
        return coll

    def _get_or_create(self, name: str) -> _Collection:
        coll = self._collections.get(_cap_first(name))
        if coll is not None:
            return coll
        if not self.auto_schema:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"class {name} not found (auto-schema disabled)", 404)
        schema = _normalize_class({"class": name})
        self._collections[schema["class"]] = coll = _Collection(schema)
        return coll

    def _store(self, coll: _Collection, uid: str, props: dict[str, Any], unnamed: list[float] | None,
               named: dict[str, list[float]], created: int | None = None) -> str:
        """Validate and write (replacing any object with that uuid); raises ValueError per Weaviate's checks."""
        uid = _canonical_uuid(uid)
        clean: dict[str, Any] = {}
        new_props: list[dict] = []
        for key, value in props.items():
            if value is None:
                continue
            data_type = coll.data_type(key)
            if data_type is None:
                if not self.auto_schema:
                    raise ValueError(f"no such prop with name '{key}' found in class '{coll.name}' in the schema")
                inferred = _infer_type(value)
                if inferred is None:
                    continue  # Weaviate cannot infer a type from an empty list; it stores nothing
                new_props.append(_property_defaults({"name": key, "dataType": [inferred]}))
                data_type = inferred
            clean[key] = _coerce(value, data_type, key, coll.name)
        vectors: dict[str, np.ndarray] = {}
        if unnamed is not None:
            names = coll.vector_names()
            if coll.named_vectors and len(names) != 1:
                raise ValueError(f"class '{coll.name}' has multiple named vectors; vectors must be named")
            vectors[names[0]] = np.asarray(unnamed, dtype=np.float32)
        for name, values in named.items():
            if name not in coll.vector_names():
                raise ValueError(f"collection '{coll.name}' has no vector named '{name}'")
            vectors[name] = np.asarray(values, dtype=np.float32)
        for name, vec in vectors.items():
            if vec.ndim != 1 or len(vec) == 0:
                raise ValueError(f"vector '{name}' must be a non-empty list of numbers")
            expected = coll.dims.get(name)
            if expected is not None and expected != len(vec):
                raise ValueError(f"new node has a vector with length {len(vec)}. "
                                 f"Existing nodes have vectors with length {expected}")
        for prop in new_props:
            if coll.prop(prop["name"]) is None:
                coll.schema["properties"].append(prop)
        for name, vec in vectors.items():
            coll.dims.setdefault(name, len(vec))
        now = int(time.time() * 1000)
        self._seq += 1
        obj = _Object(uid, clean, vectors, created or now, now, self._seq)
        for key, value in clean.items():
            if coll.data_type(key) in _SEARCHABLE_TYPES:
                tokens: list[str] = []
                for item in value if isinstance(value, list) else [value]:
                    tokens.extend(tokenize(item, coll.tokenization(key)))
                obj.tf[key] = Counter(tokens)
                obj.length[key] = len(tokens)
        coll.objects.pop(uid, None)
        coll.objects[uid] = obj
        return uid

    # ---- gRPC: BatchObjects / BatchDelete / Aggregate

    def _batch_objects(self, request: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors: list[batch_pb2.BatchObjectsReply.BatchError] = []
        with self._lock:
            for index, obj in enumerate(request.objects):
                try:
                    props = _properties_from_batch(obj.properties) if obj.HasField("properties") else {}
                    coll = self._get_or_create(obj.collection)
                    for key, value in props.items():  # the Struct carries every number as a double
                        if coll.data_type(key) == "int" and isinstance(value, float) and value.is_integer():
                            props[key] = int(value)
                    for predicate, message in self._object_faults:
                        if predicate(copy.deepcopy(props)):
                            raise ValueError(message)
                    if obj.tenant:
                        raise ValueError(f"class {obj.collection}: has multi-tenancy disabled, but request was "
                                         f"with tenant")
                    unnamed, named = _vectors_from_proto(obj.vector_bytes, obj.vector, obj.vectors)
                    self._store(coll, obj.uuid or str(uuid_lib.uuid4()), props, unnamed, named)
                except (ValueError, _Abort) as e:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=str(e)))
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

    def _batch_delete(self, request: batch_delete_pb2.BatchDeleteRequest) -> batch_delete_pb2.BatchDeleteReply:
        with self._lock:
            coll = self._get_collection(request.collection)
            if not request.HasField("filters"):
                raise _bad("batch delete requires a filter")
            matches = [o for o in self._ordered(coll) if self._matches(coll, o, request.filters)]
            matches = matches[: self.max_results]
            if not request.dry_run:
                for obj in matches:
                    coll.objects.pop(obj.uuid, None)
            objects = [batch_delete_pb2.BatchDeleteObject(uuid=uuid_lib.UUID(o.uuid).bytes, successful=True)
                       for o in matches] if request.verbose else []
            return batch_delete_pb2.BatchDeleteReply(took=0.001, failed=0, matches=len(matches),
                                                     successful=len(matches), objects=objects)

    def _aggregate(self, request: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        unsupported = [name for name in ("group_by", "hybrid", "near_vector", "near_object", "near_text",
                                         "near_image", "near_audio", "near_video", "near_depth", "near_thermal",
                                         "near_imu") if request.HasField(name)]
        if unsupported or request.aggregations:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED,
                         f"fake weaviate: Aggregate supports only objects_count with filters, not "
                         f"{unsupported or 'metrics'}")
        with self._lock:
            coll = self._get_collection(request.collection)
            count = sum(1 for o in coll.objects.values()
                        if not request.HasField("filters") or self._matches(coll, o, request.filters))
        single = aggregate_pb2.AggregateReply.Single(objects_count=count if request.objects_count else None)
        return aggregate_pb2.AggregateReply(took=0.001, single_result=single)

    # ---- filters

    @staticmethod
    def _ordered(coll: _Collection) -> list[_Object]:
        return sorted(coll.objects.values(), key=lambda o: o.seq)

    def _matches(self, coll: _Collection, obj: _Object, f: base_pb2.Filters) -> bool:
        op = f.operator
        if op == _F.OPERATOR_AND:
            return all(self._matches(coll, obj, sub) for sub in f.filters)
        if op == _F.OPERATOR_OR:
            return any(self._matches(coll, obj, sub) for sub in f.filters)
        if op == _F.OPERATOR_NOT:
            if len(f.filters) != 1:
                raise _bad("operator Not takes exactly one operand")
            return not self._matches(coll, obj, f.filters[0])
        if op == _F.OPERATOR_NOT_EQUAL:
            return not self._compare(coll, obj, f, _F.OPERATOR_EQUAL)
        if op == _F.OPERATOR_CONTAINS_NONE:
            return not self._compare(coll, obj, f, _F.OPERATOR_CONTAINS_ANY)
        return self._compare(coll, obj, f, op)

    @staticmethod
    def _filter_property(f: base_pb2.Filters) -> str:
        if f.HasField("target"):
            kind = f.target.WhichOneof("target")
            if kind != "property":
                raise _bad(f"fake weaviate: filters on references ({kind}) are not supported")
            return f.target.property
        if f.on:
            if len(f.on) != 1:
                raise _bad("fake weaviate: filters on reference paths are not supported")
            return f.on[0]
        raise _bad("filter has no target property")

    def _compare(self, coll: _Collection, obj: _Object, f: base_pb2.Filters, op: int) -> bool:
        name = self._filter_property(f)
        if name == "_id":
            value, data_type, tokenization = obj.uuid, "uuid", "field"
        elif name.startswith("len(") and name.endswith(")"):
            inner = name[4:-1]
            if coll.prop(inner) is None:
                raise _bad(f"no such prop with name '{inner}' found in class '{coll.name}' in the schema")
            raw = obj.properties.get(inner)
            value, data_type, tokenization = (len(raw) if raw is not None else 0), "int", None
        elif name.startswith("_"):
            raise _bad(f"fake weaviate: filtering on '{name}' is not supported")
        else:
            data_type = coll.data_type(name)
            if data_type is None:
                raise _bad(f"no such prop with name '{name}' found in class '{coll.name}' in the schema")
            value, tokenization = obj.properties.get(name), coll.tokenization(name)
            if data_type in ("uuid", "uuid[]", "date", "date[]"):
                tokenization = "field"
        kind = f.WhichOneof("test_value")
        if op == _F.OPERATOR_IS_NULL:
            return (value is None or value == []) == bool(f.value_boolean)
        if kind is None:
            raise _bad(f"filter on '{name}' has no value")
        if kind == "value_geo" or op == _F.OPERATOR_WITHIN_GEO_RANGE:
            raise _bad("fake weaviate: geo filters are not supported")
        if value is None:
            return False
        values = value if isinstance(value, list) else [value]
        if kind in ("value_text_array", "value_int_array", "value_boolean_array", "value_number_array"):
            wanted = list(getattr(f, kind).values)
        else:
            wanted = [getattr(f, kind)]
        if data_type in _TEXT_TYPES:
            if kind not in ("value_text", "value_text_array"):
                raise _bad(f"invalid filter value {kind} for {data_type} property '{name}'")
            return self._compare_text(values, wanted, tokenization, op)
        if kind in ("value_text", "value_text_array"):
            raise _bad(f"invalid filter value {kind} for {data_type} property '{name}'")
        return self._compare_plain(values, wanted, op)

    @staticmethod
    def _compare_text(values: list[str], wanted: list[str], tokenization: str | None, op: int) -> bool:
        tokens: set[str] = set()
        for v in values:
            tokens.update(tokenize(v, tokenization))
        wanted_tokens = [tokenize(w, tokenization) for w in wanted]
        if op == _F.OPERATOR_EQUAL:
            return all(bool(t) and set(t) <= tokens for t in wanted_tokens)
        if op == _F.OPERATOR_CONTAINS_ANY:
            return any(bool(t) and set(t) <= tokens for t in wanted_tokens)
        if op == _F.OPERATOR_CONTAINS_ALL:
            return all(bool(t) and set(t) <= tokens for t in wanted_tokens)
        if op == _F.OPERATOR_LIKE:
            pattern = wanted[0] if tokenization == "field" or tokenization == "whitespace" else wanted[0].lower()
            return any(fnmatch.fnmatchcase(t, pattern) for t in tokens)
        comparisons = _COMPARISONS
        if op in comparisons:
            return any(comparisons[op](v, wanted[0]) for v in values)
        raise _bad(f"fake weaviate: operator {_F.Operator.Name(op)} is not supported on text")

    @staticmethod
    def _compare_plain(values: list[Any], wanted: list[Any], op: int) -> bool:
        if op == _F.OPERATOR_EQUAL:
            return any(v == w for v in values for w in wanted)
        if op == _F.OPERATOR_CONTAINS_ANY:
            return any(w in values for w in wanted)
        if op == _F.OPERATOR_CONTAINS_ALL:
            return all(w in values for w in wanted)
        comparisons = _COMPARISONS
        if op in comparisons:
            return any(comparisons[op](v, wanted[0]) for v in values)
        raise _bad(f"fake weaviate: operator {_F.Operator.Name(op)} is not supported here")

    # ---- gRPC: Search

    def _search(self, req: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        start = time.perf_counter()
        for name in ("group_by", "generative", "rerank", "near_object", "near_text", "near_image", "near_audio",
                     "near_video", "near_depth", "near_thermal", "near_imu", "boost"):
            if req.HasField(name):
                raise _Abort(grpc.StatusCode.UNIMPLEMENTED, f"fake weaviate: {name} is not supported")
        if req.tenant:
            raise _bad(f"class {req.collection}: has multi-tenancy disabled, but request was with tenant")
        limit = req.limit or self.default_limit
        if req.offset + limit > self.max_results:
            raise _bad(f"query maximum results exceeded: offset {req.offset} + limit {limit} > {self.max_results}")
        searching = req.HasField("near_vector") or req.HasField("bm25_search") or req.HasField("hybrid_search")
        with self._lock:
            coll = self._get_collection(req.collection)
            if req.after:
                if self.strict_cursor and (req.HasField("filters") or req.offset or req.sort_by or searching):
                    used = [n for n, on in (("offset", req.offset), ("where", req.HasField("filters")),
                                            ("sort", bool(req.sort_by)), ("search", searching)) if on]
                    raise _bad(f"{','.join(used)} cannot be set with after and limit parameters")
                after = _canonical_uuid(req.after)
            candidates = [o for o in self._ordered(coll)
                          if not req.HasField("filters") or self._matches(coll, o, req.filters)]
            scored: list[tuple[_Object, dict[str, Any]]]
            if req.HasField("near_vector"):
                scored = self._near_vector(coll, req.near_vector, candidates)
            elif req.HasField("bm25_search"):
                scored = [(o, {"score": s, "explain_score": e})
                          for o, s, e in self._bm25(coll, req.bm25_search.query, list(req.bm25_search.properties),
                                                    candidates, req.bm25_search if req.bm25_search.HasField(
                                                        "search_operator") else None)]
            elif req.HasField("hybrid_search"):
                scored = self._hybrid(coll, req.hybrid_search, candidates, max(self.hybrid_candidates,
                                                                               req.offset + limit))
            else:
                if req.after:
                    candidates = sorted((o for o in candidates if o.uuid > after), key=lambda o: o.uuid)
                elif not req.HasField("filters"):
                    candidates = sorted(candidates, key=lambda o: o.uuid)
                if req.sort_by:
                    candidates = self._sorted(coll, candidates, req.sort_by)
                scored = [(o, {}) for o in candidates]
            page = scored[req.offset: req.offset + limit]
            results = [self._result(coll, req, obj, meta) for obj, meta in page]
        return search_get_pb2.SearchReply(took=time.perf_counter() - start, results=results)

    @staticmethod
    def _sorted(coll: _Collection, objects: list[_Object], sort_by: Any) -> list[_Object]:
        out = list(objects)
        for sort in reversed(list(sort_by)):
            prop = sort.path[0] if sort.path else "_id"

            def key(o: _Object, prop: str = prop) -> tuple:
                v = o.uuid if prop == "_id" else o.properties.get(prop)
                return (v is None, v if v is not None else 0)
            present = [o for o in out if not key(o)[0]]
            missing = [o for o in out if key(o)[0]]
            present.sort(key=lambda o: key(o)[1], reverse=not sort.ascending)
            out = present + missing
        return out

    def _query_vector(self, coll: _Collection, vector_bytes: bytes, vector: Any, vectors: Any,
                      vector_for_targets: Any, targets: list[str]) -> tuple[str, np.ndarray]:
        unnamed, named = _vectors_from_proto(vector_bytes, vector, vectors)
        for vft in vector_for_targets:
            u, n = _vectors_from_proto(vft.vector_bytes, [], vft.vectors)
            named[vft.name] = u if u is not None else next(iter(n.values()))
        if unnamed is None and not named:
            raise _bad("a vector is required for this search (the fake has no vectorizer modules)")
        if unnamed is not None:
            name = coll.resolve_vector_name(targets)
            values = unnamed
        else:
            name = coll.resolve_vector_name(targets or list(named))
            values = named[name]
        query = np.asarray(values, dtype=np.float32)
        expected = coll.dims.get(name)
        if expected is not None and expected != len(query):
            raise _bad(f"vector search: vector lengths don't match: {len(query)} vs {expected}")
        return name, query

    @staticmethod
    def _distances(metric: str, query: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        if metric == "cosine":
            qn = query / (np.linalg.norm(query) or 1.0)
            norms = np.linalg.norm(matrix, axis=1)
            norms[norms == 0] = 1.0
            return 1.0 - (matrix @ qn) / norms
        if metric == "dot":
            return -(matrix @ query)
        if metric == "l2-squared":
            return ((matrix - query) ** 2).sum(axis=1)
        if metric == "manhattan":
            return np.abs(matrix - query).sum(axis=1)
        if metric == "hamming":
            return (matrix != query).sum(axis=1).astype(np.float32)
        raise _bad(f"fake weaviate: distance metric {metric} is not supported")

    def _vector_ranking(self, coll: _Collection, name: str, query: np.ndarray, candidates: list[_Object]
                        ) -> list[tuple[_Object, float]]:
        with_vec = [o for o in candidates if name in o.vectors]
        if not with_vec:
            return []
        matrix = np.stack([o.vectors[name] for o in with_vec])
        dists = self._distances(coll.distance_metric(name), query, matrix).astype(np.float32)
        order = sorted(range(len(with_vec)), key=lambda i: (float(dists[i]), with_vec[i].seq))
        return [(with_vec[i], float(dists[i])) for i in order]

    def _near_vector(self, coll: _Collection, nv: base_search_pb2.NearVector, candidates: list[_Object]
                     ) -> list[tuple[_Object, dict[str, Any]]]:
        targets = list(nv.targets.target_vectors) if nv.HasField("targets") else list(nv.target_vectors)
        name, query = self._query_vector(coll, nv.vector_bytes, nv.vector, nv.vectors, nv.vector_for_targets,
                                         targets)
        metric = coll.distance_metric(name)
        out = []
        for obj, dist in self._vector_ranking(coll, name, query, candidates):
            if nv.HasField("distance") and dist > nv.distance:
                continue
            certainty = 1.0 - dist / 2.0 if metric == "cosine" else None
            if nv.HasField("certainty") and (certainty is None or certainty < nv.certainty):
                continue
            out.append((obj, {"distance": dist, "certainty": certainty}))
        return out

    def _bm25(self, coll: _Collection, query: str, properties: list[str], candidates: list[_Object],
              operator_holder: Any = None) -> list[tuple[_Object, float, str]]:
        """(object, score, explanation) for the candidates with a positive BM25 score, best first."""
        k1, b = coll.bm25_params()
        fields: list[tuple[str, float]] = []
        for spec in properties:
            name, _, boost = spec.partition("^")
            if coll.prop(name) is None:
                raise _bad(f"no such prop with name '{name}' found in class '{coll.name}' in the schema")
            if coll.data_type(name) in _SEARCHABLE_TYPES:
                fields.append((name, float(boost) if boost else 1.0))
        if not properties:
            fields = [(p["name"], 1.0) for p in coll.schema["properties"]
                      if p["dataType"][0] in _SEARCHABLE_TYPES and p.get("indexSearchable", True)]
        everyone = list(coll.objects.values())
        n_docs = len(everyone)
        stopwords = coll.stopwords()
        plans = []
        all_terms: set[str] = set()
        for name, boost in fields:
            tokenization = coll.tokenization(name)
            terms = tokenize(query, tokenization)
            if tokenization == "word":
                terms = [t for t in terms if t not in stopwords]
            counts = Counter(terms)
            all_terms.update(counts)
            having = [o.length[name] for o in everyone if name in o.length]
            avg_len = (sum(having) / len(having)) if having else 0.0
            df = {t: sum(1 for o in everyone if o.tf.get(name, {}).get(t)) for t in counts}
            plans.append((name, boost, counts, avg_len, df))
        operator = operator_holder.search_operator if operator_holder is not None else None
        out = []
        for obj in candidates:
            score, matched, explain = 0.0, set(), []
            for name, boost, counts, avg_len, df in plans:
                tf_map = obj.tf.get(name)
                if not tf_map:
                    continue
                length = obj.length[name]
                for term, query_count in counts.items():
                    tf = tf_map.get(term, 0)
                    if not tf:
                        continue
                    idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
                    norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / (avg_len or 1.0)))
                    score += boost * query_count * idf * norm
                    matched.add(term)
                    explain.append(f"BM25F_{term}_frequency:{tf}, BM25F_{term}_propLength:{length}")
            if operator is not None and operator.operator == base_search_pb2.SearchOperatorOptions.OPERATOR_AND:
                if matched != all_terms:
                    continue
            elif operator is not None and operator.minimum_or_tokens_match:
                if len(matched) < operator.minimum_or_tokens_match:
                    continue
            if score > 0:
                out.append((obj, score, ", ".join(explain)))
        out.sort(key=lambda t: (-t[1], t[0].seq))
        return out

    def _hybrid(self, coll: _Collection, h: base_search_pb2.Hybrid, candidates: list[_Object], sub_limit: int
                ) -> list[tuple[_Object, dict[str, Any]]]:
        if h.HasField("near_text"):
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "fake weaviate: hybrid near_text needs a vectorizer")
        if h.use_alpha_param:
            alpha = h.alpha_param if h.HasField("alpha_param") else 0.75
        else:
            alpha = h.alpha
        sets: list[tuple[str, float, list[tuple[_Object, float, str]]]] = []
        if alpha < 1 and h.query:
            keyword = self._bm25(coll, h.query, list(h.properties), candidates,
                                 h if h.HasField("bm25_search_operator") else None)[:sub_limit]
            sets.append(("keyword", 1 - alpha, [(o, s, e) for o, s, e in keyword]))
        if alpha > 0:
            targets = list(h.targets.target_vectors) if h.HasField("targets") else list(h.target_vectors)
            if h.HasField("near_vector"):
                nv = h.near_vector
                name, query = self._query_vector(coll, nv.vector_bytes, nv.vector, nv.vectors,
                                                 nv.vector_for_targets, targets)
            else:
                name, query = self._query_vector(coll, h.vector_bytes, h.vector, h.vectors, [], targets)
            dense = self._vector_ranking(coll, name, query, candidates)[:sub_limit]
            if h.HasField("vector_distance"):
                cut = {o.uuid for o, d in dense if d > h.vector_distance}
                dense = [(o, d) for o, d in dense if d <= h.vector_distance]
                if sets:
                    sets[0] = (sets[0][0], sets[0][1], [t for t in sets[0][2] if t[0].uuid not in cut])
            sets.append(("vector", alpha, [(o, 1.0 - d, "") for o, d in dense]))
        ranked = h.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RANKED
        fused: dict[str, list[Any]] = {}  # uuid -> [obj, score, secondary, explain]
        for set_name, weight, results in sets:
            values = [s for _, s, _ in results]
            top, bottom = (max(values), min(values)) if values else (0.0, 0.0)
            for rank, (obj, original, _) in enumerate(results):
                if ranked:
                    score = weight / (rank + 60)
                else:
                    score = weight if top == bottom else weight * (original - bottom) / (top - bottom)
                explain = (f"Hybrid (Result Set {set_name}) Document {obj.uuid}: original score {original}, "
                           f"normalized score: {score}")
                entry = fused.setdefault(obj.uuid, [obj, 0.0, original, ""])
                entry[1] += score
                entry[2] = original
                entry[3] = f"{entry[3]}\n{explain}" if entry[3] else explain
        order = sorted(fused.values(), key=lambda e: (-e[1], -e[2], e[0].seq))
        return [(obj, {"score": score, "explain_score": explain}) for obj, score, _, explain in order]

    # ---- replies

    def _result(self, coll: _Collection, req: search_get_pb2.SearchRequest, obj: _Object, meta: dict[str, Any]
                ) -> search_get_pb2.SearchResult:
        if not req.HasField("properties") or req.properties.return_all_nonref_properties:
            names = list(obj.properties)
        else:
            names = [n for n in req.properties.non_ref_properties if n in obj.properties]
        fields = {n: self._value(coll.data_type(n) or "text", obj.properties[n]) for n in names}
        props = search_get_pb2.PropertiesResult(target_collection=coll.name,
                                                non_ref_props=properties_pb2.Properties(fields=fields))
        md = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid_lib.UUID(obj.uuid).bytes)
        want = req.metadata if req.HasField("metadata") else search_get_pb2.MetadataRequest(uuid=True)
        if want.distance and meta.get("distance") is not None:
            md.distance, md.distance_present = meta["distance"], True
        if want.certainty and meta.get("certainty") is not None:
            md.certainty, md.certainty_present = meta["certainty"], True
        if want.score and meta.get("score") is not None:
            md.score, md.score_present = meta["score"], True
        if want.explain_score and meta.get("explain_score") is not None:
            md.explain_score, md.explain_score_present = meta["explain_score"], True
        if want.creation_time_unix:
            md.creation_time_unix, md.creation_time_unix_present = obj.created, True
        if want.last_update_time_unix:
            md.last_update_time_unix, md.last_update_time_unix_present = obj.updated, True
        if want.is_consistent:
            md.is_consistent, md.is_consistent_present = True, True
        wanted_vectors = list(obj.vectors) if want.vector else [n for n in want.vectors if n in obj.vectors]
        if wanted_vectors:
            if coll.named_vectors:
                md.vectors.extend(base_pb2.Vectors(name=n, vector_bytes=obj.vectors[n].astype("<f4").tobytes(),
                                                   type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32)
                                  for n in wanted_vectors)
            else:
                md.vector_bytes = obj.vectors["default"].astype("<f4").tobytes()
        return search_get_pb2.SearchResult(properties=props, metadata=md)

    @staticmethod
    def _value(data_type: str, value: Any) -> properties_pb2.Value:
        if value is None:
            return properties_pb2.Value(null_value=0)
        if data_type.endswith("[]"):
            base = data_type[:-2]
            lv = properties_pb2.ListValue()
            if base == "int":
                lv.int_values.values = struct.pack(f"<{len(value)}q", *value)
            elif base == "number":
                lv.number_values.values = struct.pack(f"<{len(value)}d", *value)
            elif base == "boolean":
                lv.bool_values.values.extend(value)
                lv.bool_values.SetInParent()
            elif base == "uuid":
                lv.uuid_values.values.extend(value)
                lv.uuid_values.SetInParent()
            elif base == "date":
                lv.date_values.values.extend(value)
                lv.date_values.SetInParent()
            elif base == "object":
                lv.object_values.values.extend(FakeWeaviate._object_value(v) for v in value)
                lv.object_values.SetInParent()
            else:
                lv.text_values.values.extend(str(v) for v in value)
                lv.text_values.SetInParent()
            return properties_pb2.Value(list_value=lv)
        if data_type == "int":
            return properties_pb2.Value(int_value=int(value))
        if data_type == "number":
            return properties_pb2.Value(number_value=float(value))
        if data_type == "boolean":
            return properties_pb2.Value(bool_value=bool(value))
        if data_type == "uuid":
            return properties_pb2.Value(uuid_value=str(value))
        if data_type == "date":
            return properties_pb2.Value(date_value=str(value))
        if data_type == "object" and isinstance(value, dict):
            return properties_pb2.Value(object_value=FakeWeaviate._object_value(value))
        return properties_pb2.Value(text_value=str(value))

    @staticmethod
    def _object_value(value: dict) -> properties_pb2.Properties:
        return properties_pb2.Properties(fields={k: FakeWeaviate._value(_infer_type(v) or "text", v)
                                                 for k, v in value.items() if v is not None})


# --------------------------------------------------------------------------- the servers


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self.fake._grpc_call("Search", request, context, self.fake._search)

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self.fake._grpc_call("BatchObjects", request, context, self.fake._batch_objects)

    def BatchDelete(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self.fake._grpc_call("BatchDelete", request, context, self.fake._batch_delete)

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self.fake._grpc_call("Aggregate", request, context, self.fake._aggregate)

    def _unimplemented(self, name: str, request: Any, context: grpc.ServicerContext) -> Any:
        def refuse(_: Any) -> Any:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, f"fake weaviate: {name} is not implemented")
        return self.fake._grpc_call(name, request, context, refuse)

    def TenantsGet(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._unimplemented("TenantsGet", request, context)

    def BatchReferences(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._unimplemented("BatchReferences", request, context)

    def BatchStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._unimplemented("BatchStream", None, context)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeWeaviate) -> None:
        super().__init__(("127.0.0.1", 0), _HTTPHandler)
        self.fake = fake


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload = self.server.fake._handle_http(self.command, self.path, headers, raw)
        except Exception as e:  # a bug in the fake: answer, so the client fails fast instead of hanging
            log.exception("fake weaviate failed on %s %s", self.command, self.path)
            status, payload = 500, {"error": [{"message": f"fake weaviate failed: {e!r}"}]}
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("fake weaviate: " + format, *args)


class _ClientPatch:
    """A change to the weaviate-client module state, applied while at least one fake runs."""

    _lock = threading.Lock()
    _count = 0
    _saved: Any = None

    @classmethod
    def acquire(cls) -> None:
        with _ClientPatch._lock:
            if cls._count == 0:
                cls._saved = cls._apply()
            cls._count += 1

    @classmethod
    def release(cls) -> None:
        with _ClientPatch._lock:
            cls._count -= 1
            if cls._count == 0:
                cls._undo(cls._saved)

    @classmethod
    def _apply(cls) -> Any:
        raise NotImplementedError

    @classmethod
    def _undo(cls, saved: Any) -> None:
        raise NotImplementedError


class _NoVersionCheck(_ClientPatch):
    """The client's connect-time PyPI lookup (a GET to pypi.org) becomes a no-op."""

    @classmethod
    def _apply(cls) -> Any:
        from weaviate.connect import executor
        from weaviate.connect.v4 import _ConnectionBase

        saved = _ConnectionBase.__dict__["_check_package_version"]
        _ConnectionBase._check_package_version = (  # type: ignore[method-assign]
            lambda self, colour: executor.empty(colour))
        return saved

    @classmethod
    def _undo(cls, saved: Any) -> None:
        from weaviate.connect.v4 import _ConnectionBase

        _ConnectionBase._check_package_version = saved  # type: ignore[method-assign]


class _InstantTime:
    """``time`` and ``asyncio`` as ``weaviate.retry`` sees them, with sleeps that return at once."""

    def __init__(self, module: Any, asynchronous: bool) -> None:
        self._module = module
        self._asynchronous = asynchronous

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def sleep(self, seconds: float) -> Any:
        if self._asynchronous:
            return self._module.sleep(0)
        return None


class _InstantClientRetries(_ClientPatch):
    """The client's own gRPC retry on UNAVAILABLE (``weaviate.retry._Retry``: 1, 2, 4, ... 32 s
    sleeps, up to 6 attempts for Search/Aggregate and 4 for insert_many's BatchObjects) does not sleep."""

    @classmethod
    def _apply(cls) -> Any:
        import asyncio

        import weaviate.retry as retry

        saved = (retry.time, retry.asyncio)
        retry.time = _InstantTime(time, asynchronous=False)  # type: ignore[assignment]
        retry.asyncio = _InstantTime(asyncio, asynchronous=True)  # type: ignore[assignment]
        return saved

    @classmethod
    def _undo(cls, saved: Any) -> None:
        import weaviate.retry as retry

        retry.time, retry.asyncio = saved
