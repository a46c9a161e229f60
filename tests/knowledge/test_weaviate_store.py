"""The Weaviate store: the shared contract (against a wire-level fake always, against a real
Weaviate when WEAVIATE_URL is set), and what goes over the wire: the access filter on every
search, deletes, batch errors, retries, and clear errors when Weaviate is away or refuses."""

from __future__ import annotations

import os
import socket
import time
import uuid

import grpc
import pytest

from knowledge.access import Scope
from knowledge.errors import StoreError
from knowledge.stores.weaviate import WeaviateOptions, WeaviateStore, chunk_uuid, document_version
from tests.fakes.weaviate_server import FakeWeaviate, deployed_version
from tests.knowledge.store_contract import (
    DIMENSION, ENG, FIN, GENERAL, SECRET, StoreContract, audience, chunks, request,
)

MODEL = "test-model"
PINNED_VERSION = deployed_version()


def open_store(url: str, grpc_port: int, **options) -> WeaviateStore:
    defaults = {"retry_backoff_s": 0.01, "startup_timeout_s": 2.0}
    return WeaviateStore(WeaviateOptions(url=url, grpc_port=grpc_port, **{**defaults, **options}),
                         dimension=DIMENSION, model_id=MODEL)


@pytest.fixture
def fake():
    with FakeWeaviate(version=PINNED_VERSION) as server:
        yield server


class TestWeaviateStoreOnTheFake(StoreContract):
    @pytest.fixture
    def store(self, fake):
        store = open_store(fake.url, fake.grpc_port)
        yield store
        store.close()


# Read at import: tests/conftest.py clears WEAVIATE_* for every test, so that no other test (a CLI
# test, say) ever talks to the real server.
REAL_WEAVIATE = os.environ.get("WEAVIATE_URL")
REAL_GRPC_PORT = int(os.environ.get("WEAVIATE_GRPC_PORT", "50051"))
REAL_API_KEY = os.environ.get("WEAVIATE_API_KEY")


def test_the_contract_against_a_real_weaviate_runs_when_weaviate_url_is_set():
    if not REAL_WEAVIATE:  # one visible skip instead of one per contract test
        pytest.skip("set WEAVIATE_URL (and WEAVIATE_API_KEY, WEAVIATE_GRPC_PORT) to run the store contract against a real Weaviate")


if REAL_WEAVIATE:
    class TestWeaviateStoreOnARealServer(StoreContract):
        @pytest.fixture
        def store(self):
            collection = f"LorebotTest{uuid.uuid4().hex[:10]}"
            store = open_store(REAL_WEAVIATE, REAL_GRPC_PORT, api_key=REAL_API_KEY, collection=collection)
            yield store
            store._client.collections.delete(collection)
            store.close()


# --- What goes over the wire ---------------------------------------------------------------------


@pytest.fixture
def store(fake):
    store = open_store(fake.url, fake.grpc_port)
    store.upsert_documents({
        "pub": chunks("pub", ["holiday policy gives twenty days of paid leave"], Scope.public()),
        "eng": chunks("eng", ["the pager escalates after fifteen minutes", "rollback with deploy revert"],
                      Scope.channels([ENG])),
        "fin": chunks("fin", [SECRET], Scope.channels([FIN])),
    })
    yield store
    store.close()


def scope_filter_of(search_request) -> tuple[str, list[str]]:
    """(property, values) of a Search request's filter; fails unless it is one ContainsAny on scope."""
    filters = search_request.filters
    assert filters.operator == filters.OPERATOR_CONTAINS_ANY, filters
    target = filters.target.property or filters.on[0]
    return target, sorted(filters.value_text_array.values)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_every_search_sends_the_audience_filter(store, fake, mode):
    before = len(fake.grpc_requests("Search"))
    store.search(request("pager", mode=mode), audience(ENG))
    store.search(request("pager", mode=mode), audience("D0DIRECT"))
    sent = fake.grpc_requests("Search")[before:]
    assert [scope_filter_of(r) for r in sent] == [("scope", [ENG, "public"]), ("scope", ["public"])]


def test_a_search_without_an_access_filter_sends_nothing(store, fake):
    before = len(fake.requests)
    with pytest.raises(StoreError, match="access filter"):
        store.search(request("pager"), None)
    assert len(fake.requests) == before


def test_hybrid_search_sends_the_question_vector_text_and_fusion_settings(store, fake):
    store.search(request("pager escalates"), audience(ENG))
    hybrid = fake.grpc_requests("Search")[-1].hybrid_search
    assert hybrid.query == "pager escalates"
    assert hybrid.alpha == pytest.approx(0.5)
    assert hybrid.fusion_type == hybrid.FUSION_TYPE_RELATIVE_SCORE
    assert sorted(hybrid.properties) == ["heading_path", "text", "title"]


def test_reads_ask_for_the_configured_consistency(fake):
    store = open_store(fake.url, fake.grpc_port, consistency="ALL")
    store.search(request("anything"), audience(GENERAL))
    assert fake.grpc_requests("Search")[-1].consistency_level == fake.consistency_levels["ALL"]
    store.close()


def test_deleting_a_document_sends_one_delete_by_document_id(store, fake):
    store.delete_document("eng")
    sent = fake.grpc_requests("BatchDelete")[-1].filters
    assert sent.operator == sent.OPERATOR_EQUAL and sent.value_text == "eng"
    assert store.chunks_of("eng") == [] and {o["properties"]["doc_id"] for o in fake.objects("LorebotChunk")} == {"pub", "fin"}


def test_reingesting_the_same_content_rewrites_the_same_objects(store, fake):
    same = chunks("eng", ["the pager escalates after fifteen minutes", "rollback with deploy revert"],
                  Scope.channels([ENG]))
    ids_before = sorted(o["uuid"] for o in fake.objects("LorebotChunk"))
    store.upsert_documents({"eng": same})
    assert sorted(o["uuid"] for o in fake.objects("LorebotChunk")) == ids_before
    assert {o["uuid"] for o in fake.objects("LorebotChunk") if o["properties"]["doc_id"] == "eng"} == {
        chunk_uuid(c.chunk_id, document_version(same)) for c in same}


def test_a_changed_document_replaces_its_old_version(store, fake):
    store.upsert_documents({"eng": chunks("eng", ["new runbook"], Scope.channels([ENG]))})
    stale = fake.grpc_requests("BatchDelete")[-1].filters
    assert stale.operator == stale.OPERATOR_AND  # doc_id = eng AND version != the new one
    assert [o["properties"]["text"] for o in fake.objects("LorebotChunk") if o["properties"]["doc_id"] == "eng"] == [
        "new runbook"]


def test_refused_chunks_are_all_reported_and_the_old_version_stays_readable(store, fake):
    fake.fail_objects(lambda properties: properties.get("doc_id") == "eng")
    with pytest.raises(StoreError) as refused:
        store.upsert_documents({"eng": chunks("eng", ["one", "two", "three"], Scope.channels([ENG]))})
    message = str(refused.value)
    assert "refused 3 of 3 chunks" in message and "eng:0" in message and "eng:2" in message
    fake.reset_faults()
    assert [c.text for c in store.chunks_of("eng")] == ["the pager escalates after fifteen minutes",
                                                         "rollback with deploy revert"]


def test_a_half_written_version_is_never_read_as_the_document(store, fake):
    fake.fail_objects(lambda properties: properties.get("chunk_id") == "eng:1")
    with pytest.raises(StoreError, match="eng:1"):
        store.upsert_documents({"eng": chunks("eng", ["new first", "new second"], Scope.channels([ENG]))})
    # "new first" landed, "new second" did not: readers still get the complete old version.
    assert any(o["properties"]["text"] == "new first" for o in fake.objects("LorebotChunk"))
    assert [c.text for c in store.chunks_of("eng")][0] == "the pager escalates after fifteen minutes"
    assert {d.doc_id: d.chunks for d in store.list_documents()}["eng"] == 2
    fake.reset_faults()
    store.upsert_documents({"eng": chunks("eng", ["new first", "new second"], Scope.channels([ENG]))})
    assert [c.text for c in store.chunks_of("eng")] == ["new first", "new second"]


@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_a_transient_failure_is_retried(store, fake, code):
    fake.fail_next("Search", code=code, times=2)
    hits = store.search(request("holiday paid leave"), audience(GENERAL))
    assert hits and hits[0].chunk.doc_id == "pub"
    assert len(fake.grpc_requests("Search")) >= 3


def test_an_unavailable_server_gives_a_clear_error_then_fails_fast_for_a_while(fake):
    store = open_store(fake.url, fake.grpc_port, unavailable_pause_s=0.5)
    # weaviate-client retries UNAVAILABLE itself, six tries for a search (the fake skips its
    # sleeps, about a minute in real life); the store does not multiply that, and says what failed.
    fake.fail_next("Search", code=grpc.StatusCode.UNAVAILABLE, times=6)
    with pytest.raises(StoreError, match="Weaviate searching failed"):
        store.search(request("holiday"), audience(GENERAL))
    # For a while after, a question fails at once, without another minute of retries.
    sent = len(fake.grpc_requests("Search"))
    with pytest.raises(StoreError, match="unavailable moments ago"):
        store.search(request("holiday"), audience(GENERAL))
    assert len(fake.grpc_requests("Search")) == sent
    time.sleep(0.6)
    assert store.search(request("holiday"), audience(GENERAL)) == []
    store.close()


def test_a_request_weaviate_refuses_is_not_retried(store, fake):
    fake.fail_next("Search", code=grpc.StatusCode.INVALID_ARGUMENT, times=1, message="bad filter")
    before = len(fake.grpc_requests("Search"))
    with pytest.raises(StoreError, match="bad filter"):
        store.search(request("holiday"), audience(GENERAL))
    assert len(fake.grpc_requests("Search")) == before + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_weaviate_gives_a_clear_error():
    port = free_port()
    with pytest.raises(StoreError) as refused:
        open_store(f"http://127.0.0.1:{port}", free_port(), retries=1)
    message = str(refused.value)
    assert message.startswith(f"cannot reach Weaviate at http://127.0.0.1:{port}") and "WEAVIATE_URL" in message


def test_a_bad_url_is_refused_before_connecting():
    with pytest.raises(StoreError, match="WEAVIATE_URL must look like"):
        open_store("weaviate:8080", 50051)


def test_the_api_key_is_sent_and_a_wrong_one_is_named():
    with FakeWeaviate(api_key="right-key", version=PINNED_VERSION) as server:
        store = open_store(server.url, server.grpc_port, api_key="right-key")
        store.search(request("anything"), audience(GENERAL))
        store.close()
        with pytest.raises(StoreError, match="WEAVIATE_API_KEY"):
            open_store(server.url, server.grpc_port, api_key="wrong-key", retries=0)


def test_grpc_can_be_served_from_another_host_than_rest(fake, monkeypatch):
    # Weaviate's Helm chart: REST behind the Service "weaviate", gRPC behind "weaviate-grpc".
    import weaviate

    connected = []
    real_connect = weaviate.connect_to_custom

    def recording_connect(**kwargs):
        connected.append(kwargs)
        return real_connect(**kwargs)

    monkeypatch.setattr(weaviate, "connect_to_custom", recording_connect)
    store = open_store(f"http://localhost:{fake.http_port}", fake.grpc_port, grpc_host="127.0.0.1")
    store.search(request("anything"), audience(GENERAL))
    store.close()
    assert (connected[0]["http_host"], connected[0]["grpc_host"]) == ("localhost", "127.0.0.1")


def test_a_collection_built_for_another_model_is_refused(fake):
    open_store(fake.url, fake.grpc_port).close()
    with pytest.raises(StoreError, match="built with embedding model 'test-model'"):
        WeaviateStore(WeaviateOptions(url=fake.url, grpc_port=fake.grpc_port), dimension=DIMENSION,
                      model_id="another-model")


def test_a_collection_with_another_schema_is_refused(fake):
    import weaviate
    from weaviate.classes.config import DataType, Property

    with weaviate.connect_to_custom(http_host="127.0.0.1", http_port=fake.http_port, http_secure=False,
                                    grpc_host="127.0.0.1", grpc_port=fake.grpc_port, grpc_secure=False) as client:
        client.collections.create("LorebotChunk", properties=[Property(name="text", data_type=DataType.INT)])
    with pytest.raises(StoreError) as refused:
        open_store(fake.url, fake.grpc_port)
    assert "property text is int, not text" in str(refused.value) and "LOREBOT_WEAVIATE_COLLECTION" in str(refused.value)


def test_the_collection_is_created_with_the_cluster_settings(fake):
    open_store(fake.url, fake.grpc_port, replication_factor=3, shards=2, collection="LorebotCluster").close()
    schema = fake.collections["LorebotCluster"]
    assert schema["replicationConfig"]["factor"] == 3 and schema["shardingConfig"]["desiredCount"] == 2
    assert schema["vectorConfig"]["chunk"]["vectorizer"] == {"none": {}}


def test_a_wrong_grpc_port_is_named_at_start_not_at_the_first_question(fake):
    wrong = free_port()
    with pytest.raises(StoreError) as refused:
        open_store(fake.url, wrong, retries=0, startup_timeout_s=0.5)
    assert f"gRPC port {wrong} did not answer" in str(refused.value) and "WEAVIATE_GRPC_PORT" in str(refused.value)


def test_versions_written_in_quick_succession_stay_ordered(store, fake):
    # Integers travel as doubles: the generation must stay exact, or two versions could tie.
    for i in range(5):
        store.upsert_documents({"eng": chunks("eng", [f"runbook revision {i}"], Scope.channels([ENG]))})
    [stored] = [o["properties"] for o in fake.objects("LorebotChunk") if o["properties"]["doc_id"] == "eng"]
    assert stored["text"] == "runbook revision 4" and stored["generation"] < 2**53
    assert [c.text for c in store.chunks_of("eng")] == ["runbook revision 4"]
