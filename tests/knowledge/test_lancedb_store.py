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
    @pytest.fixture
    def store(self, tmp_path):
        store = LanceStore(tmp_path / "index", dimension=DIMENSION, model_id="contract-model")
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
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", ann_min_rows=2_000, exact_search_max_rows=100)
    # A tiny channel owns 5 of 3,000 chunks: it must still get all of them back.
    store.upsert_documents(_random_chunks(3_000, rng, channel_for=lambda i: Scope.channels(["C0TINY"]) if i % 600 == 0 else Scope.channels(["C0BIG"])))
    store.optimize()
    assert any(ix.name == "vector_idx" for ix in store._table.list_indices())
    tuned = json.loads((tmp_path / "ann.json").read_text())
    assert tuned["recall_at_10"] >= 0.95

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
