"""The LanceDB store: the shared contract, plus what only the embedded store does (its ANN index)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from knowledge.access import Scope
from knowledge.errors import StoreError
from knowledge.stores.lancedb import LanceStore
from knowledge.types import StoredChunk
from tests.knowledge.store_contract import DIMENSION, StoreContract, audience, chunks, request


class TestLanceStoreContract(StoreContract):
    # Both ways of searching: LanceDB's own (one-shot commands) and the in-memory copies (the bot),
    # with the keyword postings rebuilt by whichever search finds them stale, so that every search
    # is answered from memory.
    @pytest.fixture(params=[False, True], ids=["lancedb-search", "in-memory"])
    def store(self, tmp_path, request):
        store = LanceStore(tmp_path / "index", dimension=DIMENSION, model_id="contract-model",
                           vectors_in_memory=request.param, keyword_settle_s=None)
        yield store
        store.close()


def test_reopening_with_another_embedding_model_is_a_clear_error(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="model-a")
    store.upsert_documents({"d": chunks("d", ["text"], Scope.public())})
    with pytest.raises(StoreError, match="model-a"):
        LanceStore(tmp_path, dimension=DIMENSION, model_id="model-b")


def _random_chunks(n: int, rng: np.random.Generator, *, channel_for) -> dict[str, list[StoredChunk]]:
    vectors = rng.normal(size=(n, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs: dict[str, list[StoredChunk]] = {}
    for i, v in enumerate(vectors):
        scope = channel_for(i)
        [base] = chunks(f"d{i}", [f"chunk number {i}"], scope)
        docs[f"d{i}"] = [StoredChunk(**{**base.__dict__, "vector": v})]
    return docs


def test_large_tables_get_an_ann_index_tuned_against_exact_search(tmp_path):
    rng = np.random.default_rng(7)
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", ann_min_rows=2_000, rows_per_partition=500,
                       exact_search_max_rows=100)
    # A tiny channel owns 5 of 3,000 chunks: it must still get all of them back.
    store.upsert_documents(_random_chunks(3_000, rng, channel_for=lambda i: Scope.channels(["C0TINY"]) if i % 600 == 0 else Scope.channels(["C0BIG"])))
    store.optimize()
    assert any(ix.name == "vector_idx" for ix in store._table.list_indices())
    tuned = json.loads((tmp_path / "ann.json").read_text())
    assert tuned["recall_at_10"] >= min(0.95, tuned["recall_all_partitions"] - 0.02)
    assert tuned["partitions"] == 6 and tuned["nprobes"] <= 6 and tuned["sample"] == 150

    query = rng.normal(size=DIMENSION).astype(np.float32)
    query /= np.linalg.norm(query)
    req = request("x", mode="dense", k=10)
    req = type(req)(text="x", vector=query, k=10, mode="dense", candidates=10)
    tiny = store.search(req, audience("C0TINY"))
    assert {h.chunk.doc_id for h in tiny} == {f"d{i}" for i in range(0, 3000, 600)}

    # The big channel goes through the ANN index, and agrees with exact search on its top hit.
    near = store.chunks_of("d1")[0]
    noisy = np.asarray(near.vector) + rng.normal(scale=0.01, size=DIMENSION).astype(np.float32)
    big = store.search(type(req)(text="x", vector=noisy / np.linalg.norm(noisy), k=10, mode="dense", candidates=10),
                       audience("C0BIG"))
    assert len(big) == 10 and big[0].chunk.doc_id == "d1"
    # Similarities are true cosines even when the quantised ANN index ranked the hits.
    query = noisy / np.linalg.norm(noisy)
    for hit in big:
        stored = np.asarray(store.chunks_of(hit.chunk.doc_id)[0].vector)
        assert hit.similarity == pytest.approx(float(query @ stored), abs=1e-5)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIMENSION).astype(np.float32)
    return v / np.linalg.norm(v)


def _dense(vector: np.ndarray, k: int):
    return type(request("x"))(text="x", vector=vector, k=k, mode="dense", candidates=k)


def test_small_tables_search_exactly_in_memory_and_agree_with_lancedb(tmp_path):
    rng = np.random.default_rng(3)
    labels = [Scope.public(), Scope.channels(["C0ALPHA"]), Scope.channels(["C0BETA"]),
              Scope.channels(["C0ALPHA", "C0BETA"])]
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True)
    store.upsert_documents(_random_chunks(1_500, rng, channel_for=lambda i: labels[i % 4]))
    store.optimize()
    # The reference: LanceDB's own exact search, with no in-memory copy.
    reference = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    for channel in ("C0ALPHA", "C0BETA", "C0GAMMA"):
        for _ in range(5):
            query = _unit(rng)
            ours = store.search(_dense(query, 20), audience(channel))
            theirs = reference.search(_dense(query, 20), audience(channel))
            assert [h.chunk.chunk_id for h in ours] == [h.chunk.chunk_id for h in theirs]
            assert [h.similarity for h in ours] == pytest.approx([h.similarity for h in theirs], abs=1e-5)
            allowed = {"public", channel}
            assert all(allowed & h.chunk.scope.labels for h in ours)
    assert store._snapshot is not None and len(store._snapshot) == 1_500
    assert reference._snapshot is None


def test_the_in_memory_copy_follows_every_write(tmp_path):
    rng = np.random.default_rng(5)
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True)
    store.upsert_documents(_random_chunks(50, rng, channel_for=lambda i: Scope.public()))
    target = np.asarray(store.chunks_of("d7")[0].vector)
    assert store.search(_dense(target, 1), audience("C0OTHER"))[0].chunk.doc_id == "d7"

    # Re-scoped to a private channel: gone from other channels at once, found in its own.
    store.rescope_document("d7", Scope.channels(["C0SECRET"]))
    assert "d7" not in {h.chunk.doc_id for h in store.search(_dense(target, 50), audience("C0OTHER"))}
    assert store.search(_dense(target, 1), audience("C0SECRET"))[0].chunk.doc_id == "d7"

    # A new vector for a document replaces the old one; a deleted document is gone.
    [old] = store.chunks_of("d7")
    moved = _unit(rng)
    store.upsert_documents({"d7": [StoredChunk(**{**old.__dict__, "vector": moved})]})
    hit = store.search(_dense(moved, 1), audience("C0SECRET"))[0]
    assert hit.chunk.doc_id == "d7" and hit.similarity == pytest.approx(1.0, abs=1e-5)
    store.delete_document("d7")
    assert "d7" not in {h.chunk.doc_id for h in store.search(_dense(moved, 50), audience("C0SECRET"))}


def test_an_audience_that_sees_nothing_gets_nothing(tmp_path):
    rng = np.random.default_rng(9)
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True)
    store.upsert_documents(_random_chunks(20, rng, channel_for=lambda i: Scope.channels(["C0ONLY"])))
    assert store.search(_dense(_unit(rng), 5), audience("C0ELSEWHERE")) == []


@pytest.mark.parametrize("in_memory", [False, True], ids=["lancedb-search", "vectors-in-memory"])
def test_winners_are_read_by_chunk_id_when_compaction_moved_their_rows(tmp_path, in_memory):
    rng = np.random.default_rng(11)
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=in_memory)
    for doc_id, doc_chunks in _random_chunks(12, rng, channel_for=lambda i: Scope.public()).items():
        store.upsert_documents({doc_id: doc_chunks})  # one fragment each
    access = audience("C0ANY")
    found = store._dense_ids(_unit(rng), _dense(_unit(rng), 12), access, store._vector_snapshot())
    old_row_ids = {cid: row_id for cid, (_, row_id) in found.items() if not cid.startswith(("d0:", "d1:"))}
    store.delete_document("d0")
    store.delete_document("d1")
    store.optimize()  # compaction rewrites the fragments: the old row IDs now point elsewhere or nowhere
    moved = store._table.take_row_ids(list(old_row_ids.values())).select(["chunk_id"]).to_arrow()
    assert set(moved["chunk_id"].to_pylist()) != set(old_row_ids)
    rows = store._rows(old_row_ids, access, store._vector_snapshot())
    assert set(rows) == set(old_row_ids)
    for cid, row in rows.items():
        assert row["text"] == f"chunk number {cid.split(':')[0][1:]}"


# -- document-level BM25 ------------------------------------------------------------------------

def _keyword_ranking(store: LanceStore, text: str, channel: str = "C0ANY") -> list[str]:
    return [h.chunk.chunk_id for h in store.search(request(text, mode="bm25"), audience(channel))]


def _spread_and_single(store: LanceStore) -> None:
    # "spread" answers the whole question across two chunks; "single" matches two of its words in
    # one short chunk, a better chunk-level match than either of spread's.
    store.upsert_documents({
        "spread": chunks("spread", ["pods restart when the liveness probe fails after a while",
                                    "the autoscaler then adds nodes to the cluster"], Scope.public()),
        "single": chunks("single", ["pods restart nightly"], Scope.public()),
        "other": chunks("other", ["lunch is served at noon"], Scope.public()),
    })


def test_a_chunk_also_scores_as_part_of_its_document(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    _spread_and_single(store)
    store.optimize()
    question = "why do pods restart and the autoscaler add nodes"
    assert _keyword_ranking(store, question)[0].startswith("spread:")

    # The same index as an older lorebot left it, without the documents table: chunk scores alone
    # rank "single" first. optimize() builds the table from the chunks and the order follows.
    store._db.drop_table("documents")
    old = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    ranking = _keyword_ranking(old, question)
    assert ranking.index("single:0") < ranking.index("spread:0")
    old.optimize()
    assert _keyword_ranking(old, question)[0].startswith("spread:")
    assert sorted(old._documents.to_arrow()["doc_id"].to_pylist()) == ["other", "single", "spread"]


def test_document_scores_never_surface_what_the_audience_cannot_see(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    store.upsert_documents({
        "fin": chunks("fin", ["vendor payments need the treasurer", "signature above fifty thousand"],
                      Scope.channels(["C0FIN"])),
        "pub": chunks("pub", ["payments are made on fridays"], Scope.public()),
    })
    store.optimize()
    question = "vendor payments treasurer signature"
    assert {c.split(":")[0] for c in _keyword_ranking(store, question, "C0ENG")} == {"pub"}
    assert {h.chunk.doc_id for h in store.search(request(question), audience("C0ENG"))} == {"pub"}
    assert _keyword_ranking(store, question, "C0FIN")[0].startswith("fin:")


def test_the_documents_table_follows_every_write(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    _spread_and_single(store)

    def texts() -> dict[str, str]:
        rows = store._documents.to_arrow().to_pylist()
        return {r["doc_id"]: r["search_text"] for r in rows}

    assert texts()["spread"] == ("Doc\nSection\npods restart when the liveness probe fails after a while\n"
                                 "the autoscaler then adds nodes to the cluster")
    store.upsert_documents({"single": chunks("single", ["pods never restart now"], Scope.public())})
    assert texts()["single"] == "Doc\nSection\npods never restart now"
    store.rescope_document("single", Scope.channels(["C0OPS"]))
    assert _keyword_ranking(store, "pods restart", "C0ELSE") == ["spread:0"]
    scopes = {r["doc_id"]: r["scope"] for r in store._documents.to_arrow().to_pylist()}
    assert scopes == {"single": ["C0OPS"], "spread": ["public"], "other": ["public"]}
    # Its document-level score now counts for its own channel only.
    assert store._document_scores("pods restart", audience("C0ELSE").lance_where(), 10).keys() == {"spread"}
    assert store._document_scores("pods restart", audience("C0OPS").lance_where(), 10).keys() == {"spread", "single"}
    store.delete_document("spread")
    assert set(texts()) == {"single", "other"}


def test_a_documents_table_that_cannot_be_written_is_dropped_then_rebuilt(tmp_path, caplog):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    _spread_and_single(store)
    store.optimize()
    # A documents table this version cannot write to (as a future or damaged one would be).
    store._db.drop_table("documents")
    store._db.create_table("documents", data=[{"doc_id": 1, "words": ["x"]}])
    reopened = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    with caplog.at_level("WARNING"):
        reopened.upsert_documents({"new": chunks("new", ["pods restart on upgrade"], Scope.public())})
    assert "document-level BM25 is off until the next optimize" in caplog.text
    assert "documents" not in reopened._table_names()
    # Keyword search goes on with chunk scores, and finds the new document.
    assert "new:0" in _keyword_ranking(reopened, "pods restart upgrade")
    reopened.optimize()
    assert sorted(reopened._documents.to_arrow()["doc_id"].to_pylist()) == ["new", "other", "single", "spread"]
    assert _keyword_ranking(reopened, "pods restart upgrade")[0] == "new:0"


def test_a_documents_table_of_another_layout_is_rebuilt_by_optimize(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    _spread_and_single(store)
    store._db.drop_table("documents")
    store._db.create_table("documents", data=[{"doc_id": "spread", "search_text": "an older layout"}])
    reopened = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    reopened.optimize()
    rows = {r["doc_id"]: r for r in reopened._documents.to_arrow().to_pylist()}
    assert set(rows) == {"spread", "single", "other"} and rows["single"]["scope"] == ["public"]
    assert _keyword_ranking(reopened, "why do pods restart and the autoscaler add nodes")[0].startswith("spread:")


def test_a_store_opened_before_the_documents_table_existed_still_keeps_it_current(tmp_path):
    old = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    _spread_and_single(old)
    old._db.drop_table("documents")  # an index from before the table
    long_running = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")  # sees no documents table
    writer = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    writer.optimize()  # another process (an ingest) builds it

    long_running.rescope_document("single", Scope.channels(["C0OPS"]))
    long_running.delete_document("other")
    rows = {r["doc_id"]: r["scope"] for r in writer._documents.to_arrow().to_pylist()}
    assert rows == {"spread": ["public"], "single": ["C0OPS"]}
