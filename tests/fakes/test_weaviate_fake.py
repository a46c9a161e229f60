"""The fake Weaviate against the real weaviate-client v4: what it serves, stores, ranks and records."""

from __future__ import annotations

import math
import uuid

import grpc
import pytest
import weaviate
from weaviate.classes.config import (
    ConsistencyLevel,
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.collections.filters import _FilterToGRPC
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateGRPCUnavailableError,
    WeaviateQueryError,
    WeaviateRetryError,
    WeaviateStartUpError,
)
from weaviate.proto.v1 import base_pb2, search_get_pb2, weaviate_pb2_grpc

from tests.fakes.weaviate_server import FakeWeaviate, tokenize

F = base_pb2.Filters


def connect(fake: FakeWeaviate, api_key: str | None = None) -> weaviate.WeaviateClient:
    return weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=fake.http_port, http_secure=False,
        grpc_host="127.0.0.1", grpc_port=fake.grpc_port, grpc_secure=False,
        auth_credentials=Auth.api_key(api_key) if api_key is not None else None,
        additional_config=AdditionalConfig(timeout=Timeout(init=2, query=5, insert=5)),
    )


@pytest.fixture
def fake():
    with FakeWeaviate() as server:
        yield server


@pytest.fixture
def client(fake):
    c = connect(fake)
    yield c
    c.close()


def create_chunks(client: weaviate.WeaviateClient, name: str = "Chunk"):
    return client.collections.create(
        name,
        properties=[
            Property(name="doc_id", data_type=DataType.TEXT, tokenization=Tokenization.FIELD, skip_vectorization=True),
            Property(name="title", data_type=DataType.TEXT),
            Property(name="text", data_type=DataType.TEXT),
            Property(name="channels", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
            Property(name="position", data_type=DataType.INT),
        ],
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)),
        inverted_index_config=Configure.inverted_index(bm25_b=0.75, bm25_k1=1.2),
        replication_config=Configure.replication(factor=1),
        sharding_config=Configure.sharding(desired_count=2),
    )


DOCS = [  # (doc_id, title, text, channels, vector)
    ("d1", "Vacation policy", "Employees get twenty days of paid vacation", ["public"], [1.0, 0.0, 0.0]),
    ("d1", "Vacation policy", "Carry over up to five vacation days", ["public"], [0.9, 0.1, 0.0]),
    ("d2", "Payroll", "Salaries are paid on the last business day", ["finance"], [0.0, 1.0, 0.0]),
    ("d3", "Secret project", "The zanzibar launch is confidential", ["eng"], [0.0, 0.0, 1.0]),
    ("d4", "Expenses", "Submit receipts for travel expenses monthly", ["finance", "public"], [0.5, 0.5, 0.0]),
]


def seed(collection) -> list[str]:
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"chunk-{i}")) for i in range(len(DOCS))]
    result = collection.data.insert_many([
        DataObject(properties={"doc_id": d, "title": t, "text": x, "channels": c, "position": i},
                   uuid=ids[i], vector=v)
        for i, (d, t, x, c, v) in enumerate(DOCS)
    ])
    assert not result.has_errors, result.errors
    return ids


def texts(result) -> list[str]:
    return [o.properties["text"] for o in result.objects]


# --------------------------------------------------------------------------- connecting


def test_connect_serves_the_init_checks_and_records_them(fake):
    client = connect(fake)
    try:
        assert client.is_ready()
        assert client.is_live()
    finally:
        client.close()
    calls = [(r.kind, r.method, r.path) for r in fake.requests]
    assert ("rest", "GET", "/v1/.well-known/openid-configuration") in calls
    assert ("rest", "GET", "/v1/meta") in calls
    assert ("grpc", "Check", "") in calls
    assert next(r for r in fake.requests if r.path == "/v1/meta").headers["x-weaviate-client"].startswith(
        "weaviate-client-python/")

    fake.fail_next("Check")  # the gRPC health check at connect time
    with pytest.raises(WeaviateGRPCUnavailableError):
        connect(fake)


def test_api_key_is_required_on_rest_and_grpc():
    with FakeWeaviate(api_key="s3cret") as fake:
        client = connect(fake, api_key="s3cret")
        try:
            collection = create_chunks(client)
            seed(collection)
            assert len(collection.query.fetch_objects().objects) == len(DOCS)
        finally:
            client.close()
        assert all(r.headers.get("authorization") == "Bearer s3cret" for r in fake.requests
                   if not r.path.startswith("/v1/.well-known/") and r.method != "Check")

        for wrong in ("nope", None):
            with pytest.raises((UnexpectedStatusCodeError, WeaviateStartUpError)):
                connect(fake, api_key=wrong)
        assert fake.rest_requests("GET", "/v1/meta")[-1].status == 401

        with grpc.insecure_channel(f"127.0.0.1:{fake.grpc_port}") as channel:
            stub = weaviate_pb2_grpc.WeaviateStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Search(search_get_pb2.SearchRequest(collection="Chunk"), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = stub.Search(search_get_pb2.SearchRequest(collection="Chunk", uses_123_api=True), timeout=5,
                                metadata=(("authorization", "Bearer s3cret"),))
            assert len(reply.results) == len(DOCS)


def test_a_stopped_fake_refuses_connections():
    import time

    import weaviate.retry

    fake = FakeWeaviate().start()
    http_port, grpc_port = fake.http_port, fake.grpc_port
    fake.stop()
    assert weaviate.retry.time is time  # the client patches are undone once no fake runs
    with pytest.raises(Exception):
        weaviate.connect_to_custom(http_host="127.0.0.1", http_port=http_port, http_secure=False,
                                   grpc_host="127.0.0.1", grpc_port=grpc_port, grpc_secure=False,
                                   additional_config=AdditionalConfig(timeout=Timeout(init=1)))


# --------------------------------------------------------------------------- schema


def test_schema_create_exists_config_round_trip_and_delete(fake, client):
    assert not client.collections.exists("Chunk")
    create_chunks(client)
    assert client.collections.exists("Chunk")

    sent = fake.collections["Chunk"]
    assert sent["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
    assert sent["replicationConfig"] == {"factor": 1}

    config = client.collections.get("Chunk").config.get()
    props = {p.name: p for p in config.properties}
    assert props["doc_id"].data_type == DataType.TEXT and props["doc_id"].tokenization == Tokenization.FIELD
    assert props["channels"].data_type == DataType.TEXT_ARRAY
    assert props["text"].tokenization == Tokenization.WORD
    assert props["position"].data_type == DataType.INT and props["position"].tokenization is None
    index = config.vector_config["default"].vector_index_config
    assert index.distance_metric == VectorDistances.COSINE
    assert config.replication_config.factor == 1
    assert config.sharding_config.desired_count == 2
    assert config.inverted_index_config.bm25.k1 == 1.2

    with pytest.raises(UnexpectedStatusCodeError) as again:
        create_chunks(client)
    assert again.value.status_code == 422

    assert list(client.collections.list_all()) == ["Chunk"]
    client.collections.delete("Chunk")
    assert not client.collections.exists("Chunk")


# --------------------------------------------------------------------------- writes


def test_insert_many_stores_properties_vectors_and_consistency(fake, client):
    collection = create_chunks(client).with_consistency_level(ConsistencyLevel.QUORUM)
    ids = seed(collection)
    stored = {o["uuid"]: o for o in fake.objects("Chunk")}
    assert set(stored) == set(ids)
    first = stored[ids[4]]
    assert first["properties"] == {"doc_id": "d4", "title": "Expenses",
                                   "text": "Submit receipts for travel expenses monthly",
                                   "channels": ["finance", "public"], "position": 4}
    assert first["vector"] == pytest.approx([0.5, 0.5, 0.0])

    batch = fake.grpc_requests("BatchObjects")[-1]
    assert batch.consistency_level == base_pb2.CONSISTENCY_LEVEL_QUORUM
    sent = batch.objects[0]
    assert len(sent.vector_bytes) == 3 * 4 and not sent.vectors  # one unnamed float32 vector
    assert [a.prop_name for a in sent.properties.text_array_properties] == ["channels"]

    # the same uuid again replaces the object (batch upsert)
    collection.data.insert_many([DataObject(properties={"doc_id": "d4", "text": "replaced"}, uuid=ids[4],
                                            vector=[0.0, 0.0, 1.0])])
    replaced = {o["uuid"]: o for o in fake.objects("Chunk")}[ids[4]]
    assert replaced["properties"] == {"doc_id": "d4", "text": "replaced"}
    assert len(fake.objects("Chunk")) == len(DOCS)


def test_fail_objects_reports_per_object_errors(fake, client):
    collection = create_chunks(client)
    fake.fail_objects(lambda props: props.get("position") == 2, message="disk full")
    result = collection.data.insert_many([
        DataObject(properties={"doc_id": d, "text": x, "position": i}, vector=v)
        for i, (d, _, x, _, v) in enumerate(DOCS)])
    assert result.has_errors
    assert sorted(result.errors) == [2]
    assert result.errors[2].message == "disk full"
    assert {o["properties"]["doc_id"] for o in fake.objects("Chunk")} == {"d1", "d3", "d4"}

    bad = collection.data.insert_many([DataObject(properties={"text": "ok"}, vector=[1.0, 0.0, 0.0]),
                                       DataObject(properties={"text": "short"}, vector=[1.0, 0.0])])
    assert "length" in bad.errors[1].message


def test_delete_many_with_and_filter_and_delete_by_id(fake, client):
    collection = create_chunks(client)
    ids = seed(collection)
    where = Filter.by_property("doc_id").equal("d1") & Filter.by_property("position").greater_than(0)
    result = collection.data.delete_many(where=where)
    assert (result.matches, result.successful) == (1, 1)
    assert fake.grpc_requests("BatchDelete")[-1].filters == _FilterToGRPC.convert(where)
    assert ids[1] not in {o["uuid"] for o in fake.objects("Chunk")}

    either = Filter.by_property("doc_id").equal("d2") | Filter.by_property("channels").contains_any(["eng"])
    assert collection.data.delete_many(where=either).successful == 2
    assert collection.data.delete_by_id(ids[0])
    assert not collection.data.delete_by_id(ids[0])
    assert [o["uuid"] for o in fake.objects("Chunk")] == [ids[4]]


# --------------------------------------------------------------------------- reads


def test_fetch_objects_with_contains_any_returns_only_matching(fake, client):
    collection = create_chunks(client)
    ids = seed(collection)
    where = Filter.by_property("channels").contains_any(["finance", "hr"])
    result = collection.query.fetch_objects(filters=where, limit=10, return_properties=["doc_id", "channels"],
                                            include_vector=True)
    assert sorted(str(o.uuid) for o in result.objects) == sorted([ids[2], ids[4]])
    assert all(set(o.properties) == {"doc_id", "channels"} for o in result.objects)
    assert result.objects[0].vector["default"] == pytest.approx(DOCS[2][4])

    sent = fake.grpc_requests("Search")[-1]
    assert sent.filters.operator == F.OPERATOR_CONTAINS_ANY
    assert sent.filters.target.property == "channels"
    assert list(sent.filters.value_text_array.values) == ["finance", "hr"]
    assert sent.limit == 10 and sent.metadata.vector

    one = collection.query.fetch_object_by_id(ids[3])
    assert one is not None and one.properties["doc_id"] == "d3"
    assert collection.query.fetch_objects(filters=Filter.by_property("channels").contains_any(["nobody"])
                                          ).objects == []


def test_text_filters_honour_tokenization(client):
    collection = create_chunks(client)
    seed(collection)
    word = collection.query.fetch_objects(filters=Filter.by_property("text").equal("PAID vacation"))
    assert texts(word) == [DOCS[0][2]]
    field = collection.query.fetch_objects(filters=Filter.by_property("doc_id").equal("d"))
    assert field.objects == []
    negated = collection.query.fetch_objects(filters=Filter.not_(Filter.by_property("doc_id").equal("d1")))
    assert len(negated.objects) == 3
    assert tokenize("Carry-over_days", "word") == ["carry", "over", "days"]


def test_near_vector_orders_by_cosine_distance_inside_the_filter(fake, client):
    collection = create_chunks(client)
    seed(collection)
    result = collection.query.near_vector(near_vector=[1.0, 0.0, 0.0], limit=3, include_vector=True,
                                          return_metadata=MetadataQuery(distance=True, certainty=True))
    assert texts(result) == [DOCS[0][2], DOCS[1][2], DOCS[4][2]]
    distances = [o.metadata.distance for o in result.objects]
    assert distances == sorted(distances) and distances[0] == pytest.approx(0.0, abs=1e-6)
    assert distances[2] == pytest.approx(1 - 0.5 / math.sqrt(0.5), abs=1e-6)
    assert result.objects[2].metadata.certainty == pytest.approx(1 - distances[2] / 2, abs=1e-6)

    only_finance = Filter.by_property("channels").contains_any(["finance"])
    filtered = collection.query.near_vector(near_vector=[1.0, 0.0, 0.0], limit=5, filters=only_finance)
    assert texts(filtered) == [DOCS[4][2], DOCS[2][2]]
    assert fake.grpc_requests("Search")[-1].near_vector.vectors[0].vector_bytes  # 1.32: Vectors, not vector_bytes


def test_bm25_finds_a_rare_word_and_respects_filters(client):
    collection = create_chunks(client)
    seed(collection)
    result = collection.query.bm25(query="zanzibar", query_properties=["title", "text"], limit=5,
                                   return_metadata=MetadataQuery(score=True))
    assert texts(result) == [DOCS[3][2]]
    assert result.objects[0].metadata.score > 0

    vacation = collection.query.bm25(query="the carry vacation", limit=5, return_metadata=MetadataQuery(score=True))
    assert texts(vacation) == [DOCS[1][2], DOCS[0][2]]  # "the" is an English stopword: it matches nothing
    scores = [o.metadata.score for o in vacation.objects]
    assert scores == sorted(scores, reverse=True)

    hidden = collection.query.bm25(query="zanzibar", filters=Filter.by_property("channels").contains_any(["public"]))
    assert hidden.objects == []


def test_hybrid_alpha_zero_one_and_fusions(fake, client):
    collection = create_chunks(client)
    seed(collection)
    query, vector = "vacation", [0.0, 1.0, 0.0]

    keyword_only = collection.query.hybrid(query=query, vector=vector, alpha=0.0, limit=5)
    assert texts(keyword_only) == texts(collection.query.bm25(query=query, limit=5))

    vector_only = collection.query.hybrid(query=query, vector=vector, alpha=1.0, limit=5)
    assert texts(vector_only) == texts(collection.query.near_vector(near_vector=vector, limit=5))

    relative = collection.query.hybrid(query=query, vector=vector, alpha=0.5, limit=5,
                                       fusion_type=HybridFusion.RELATIVE_SCORE, include_vector=True,
                                       return_metadata=MetadataQuery(score=True, explain_score=True))
    scores = {o.properties["text"]: o.metadata.score for o in relative.objects}
    # vector half: 1 - distance, min-max normalised over all five; keyword half: two vacation chunks
    assert scores[DOCS[2][2]] == pytest.approx(0.5, abs=1e-6)  # best vector, no keyword
    assert scores[DOCS[3][2]] == pytest.approx(0.0, abs=1e-6)  # worst vector, no keyword
    cosine = 0.1 / math.sqrt(0.82)  # chunk 1 against the query vector
    assert texts(relative)[0] == DOCS[1][2]
    assert scores[DOCS[1][2]] == pytest.approx(0.5 + 0.5 * cosine, abs=1e-6)  # tied keyword scores count as 1
    assert scores[DOCS[0][2]] == pytest.approx(0.5, abs=1e-6)
    assert all(o.metadata.explain_score for o in relative.objects)
    assert relative.objects[0].vector["default"]

    ranked = collection.query.hybrid(query=query, vector=vector, alpha=0.5, limit=5,
                                     fusion_type=HybridFusion.RANKED, return_metadata=MetadataQuery(score=True))
    # keyword ranks: d1/0, d1/1 (tied, write order); vector ranks: 2, 4, 1, 0, 3
    assert texts(ranked) == [DOCS[i][2] for i in (0, 1, 2, 4, 3)]
    assert [o.metadata.score for o in ranked.objects] == pytest.approx(
        [0.5 / 60 + 0.5 / 63, 0.5 / 61 + 0.5 / 62, 0.5 / 60, 0.5 / 61, 0.5 / 64], rel=1e-5)

    sent = fake.grpc_requests("Search")[-1].hybrid_search
    assert sent.alpha == pytest.approx(0.5) and sent.vector_bytes and sent.query == query
    assert sent.fusion_type == sent.FUSION_TYPE_RANKED

    filtered = collection.query.hybrid(query="vacation", vector=[1.0, 0.0, 0.0], alpha=0.5,
                                       filters=Filter.by_property("doc_id").equal("d3"))
    assert texts(filtered) == [DOCS[3][2]]


def test_every_search_carries_the_filter_it_was_given(fake, client):
    collection = create_chunks(client)
    seed(collection)
    fake.reset_requests()
    access = Filter.by_property("channels").contains_any(["public"]) | Filter.by_property("doc_id").equal("d2")
    collection.query.fetch_objects(filters=access)
    collection.query.near_vector(near_vector=[1.0, 0.0, 0.0], filters=access)
    collection.query.bm25(query="paid", filters=access)
    collection.query.hybrid(query="paid", vector=[1.0, 0.0, 0.0], filters=access)
    collection.aggregate.over_all(total_count=True, filters=access)
    searches = fake.grpc_requests("Search")
    assert len(searches) == 4
    expected = _FilterToGRPC.convert(access)
    for sent in searches + fake.grpc_requests("Aggregate"):
        assert sent.HasField("filters") and sent.filters == expected
        assert sent.filters.operator == F.OPERATOR_OR
        assert [f.target.property for f in sent.filters.filters] == ["channels", "doc_id"]


def test_iterator_pages_by_uuid_and_cursor_rules(fake, client):
    collection = create_chunks(client)
    ids = sorted(str(uuid.uuid4()) for _ in range(23))
    collection.data.insert_many([DataObject(properties={"doc_id": f"d{i}", "text": "x"}, uuid=u,
                                            vector=[1.0, float(i), 0.0]) for i, u in enumerate(reversed(ids))])
    seen = [str(o.uuid) for o in collection.iterator(return_properties=["doc_id"], include_vector=True,
                                                       cache_size=10)]
    assert seen == ids
    afters = [r.after for r in fake.grpc_requests("Search")]
    assert afters == ["", ids[9], ids[19], ids[22]]

    with pytest.raises(WeaviateQueryError, match="where cannot be set with after"):
        collection.query.fetch_objects(after=ids[0], filters=Filter.by_property("doc_id").equal("d1"))


def test_aggregate_count_uses_grpc(fake, client):
    collection = create_chunks(client)
    seed(collection)
    assert collection.aggregate.over_all(total_count=True).total_count == len(DOCS)
    finance = collection.aggregate.over_all(total_count=True,
                                            filters=Filter.by_property("channels").contains_any(["finance"]))
    assert finance.total_count == 2
    assert fake.grpc_requests("Aggregate")[-1].objects_count
    assert not fake.rest_requests(path_prefix="/v1/graphql")


# --------------------------------------------------------------------------- faults


def test_fail_next_makes_the_client_raise_then_recover(fake, client):
    collection = create_chunks(client)
    seed(collection)
    fake.fail_next("Search", code=grpc.StatusCode.INTERNAL, message="shard down")
    with pytest.raises(WeaviateQueryError, match="shard down"):
        collection.query.fetch_objects()
    assert len(collection.query.fetch_objects().objects) == len(DOCS)
    assert [r.status for r in fake.requests if r.method == "Search"][-2:] == ["INTERNAL", "OK"]

    fake.fail_next("/v1/schema", status=503, times=2)
    for _ in range(2):
        with pytest.raises(UnexpectedStatusCodeError) as failed:
            client.collections.exists("Chunk")
        assert failed.value.status_code == 503
    assert client.collections.exists("Chunk")

    fake.fail_next("BatchObjects", code=grpc.StatusCode.INTERNAL)
    with pytest.raises(Exception, match="injected fault"):
        collection.data.insert_many([DataObject(properties={"text": "x"}, vector=[1.0, 0.0, 0.0])])
    fake.fail_objects(lambda props: True)
    fake.reset_faults()
    assert not collection.data.insert_many([DataObject(properties={"text": "x"}, vector=[1.0, 0.0, 0.0])]
                                           ).has_errors


def test_unavailable_is_retried_by_the_client_and_delays_time_out(fake, client):
    collection = create_chunks(client)
    seed(collection)
    fake.fail_next("Search", times=5)  # UNAVAILABLE: the client retries by itself (without sleeping here)
    assert len(collection.query.fetch_objects().objects) == len(DOCS)
    assert [r.status for r in fake.requests if r.method == "Search"] == ["UNAVAILABLE"] * 5 + ["OK"]
    fake.fail_next("Search", times=6)  # ... up to 6 attempts per call
    with pytest.raises(WeaviateQueryError) as gave_up:
        collection.query.fetch_objects()
    assert isinstance(gave_up.value.__context__, WeaviateRetryError)

    impatient = weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=fake.http_port, http_secure=False,
        grpc_host="127.0.0.1", grpc_port=fake.grpc_port, grpc_secure=False,
        additional_config=AdditionalConfig(timeout=Timeout(init=2, query=0.2, insert=2)))
    try:
        fake.delay("Search", 0.5)
        with pytest.raises(WeaviateQueryError, match="Deadline"):
            impatient.collections.get("Chunk").query.fetch_objects()
        fake.reset_faults()
        assert len(impatient.collections.get("Chunk").query.fetch_objects().objects) == len(DOCS)
    finally:
        impatient.close()
