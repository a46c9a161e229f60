"""The contract every vector store must keep. A store's test module subclasses :class:`StoreContract`
and provides a ``store`` fixture (an empty store for vectors of ``DIMENSION``); nothing else.
"""

from __future__ import annotations

import hashlib
import re
import threading

import numpy as np
import pytest

from knowledge.access import AccessFilter, Audience, Scope, filter_for
from knowledge.errors import LorebotError
from knowledge.stores.base import SearchRequest
from knowledge.types import StoredChunk

DIMENSION = 32
ENG, FIN, GENERAL = "C0ENG", "C0FIN", "C0GENERAL"


def vector_for(text: str) -> np.ndarray:
    v = np.zeros(DIMENSION, dtype=np.float32)
    for word in re.findall(r"\w+", text.lower()):
        v[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSION] += 1.0
    return v / (np.linalg.norm(v) or 1.0)


def chunks(doc_id: str, texts: list[str], scope: Scope, *, title: str = "Doc") -> list[StoredChunk]:
    return [
        StoredChunk(
            chunk_id=f"{doc_id}:{i}", doc_id=doc_id, position=i, title=title, heading_path=("Section",),
            text=text, source=f"/docs/{doc_id}.md", path=f"/docs/{doc_id}.md", scope=scope,
            content_hash=hashlib.sha256("".join(texts).encode()).hexdigest(),
            embedding_hash=hashlib.sha256(text.encode()).hexdigest()[:32], vector=vector_for(text),
        )
        for i, text in enumerate(texts)
    ]


def request(text: str, *, mode: str = "hybrid", k: int = 10) -> SearchRequest:
    return SearchRequest(text=text, vector=vector_for(text), k=k, mode=mode, candidates=50)


def audience(channel: str) -> AccessFilter:
    return filter_for(Audience.for_conversation(channel))


SECRET = "quarterly vendor payments above fifty thousand need the treasurer zebra signature"


class StoreContract:
    @pytest.fixture
    def store(self):  # pragma: no cover - provided by each store's test module
        raise NotImplementedError

    @pytest.fixture
    def filled(self, store):
        store.upsert_documents({
            "pub": chunks("pub", ["holiday policy gives twenty days of paid leave", "office opens at nine"], Scope.public()),
            "eng": chunks("eng", ["the pager escalates after fifteen minutes", "rollback with deploy revert"], Scope.channels([ENG])),
            "fin": chunks("fin", [SECRET], Scope.channels([FIN])),
        })
        store.optimize()
        return store

    def test_empty_store_finds_nothing(self, store):
        assert store.count() == 0
        assert store.list_documents() == []
        assert store.search(request("anything"), audience(GENERAL)) == []

    def test_lists_documents_with_scope_and_chunk_count(self, filled):
        docs = {d.doc_id: d for d in filled.list_documents()}
        assert set(docs) == {"pub", "eng", "fin"}
        assert docs["eng"].chunks == 2 and docs["eng"].scope == Scope.channels([ENG])
        assert docs["pub"].scope.is_public
        assert filled.count() == 5

    def test_list_documents_through_an_access_filter(self, filled):
        assert {d.doc_id for d in filled.list_documents(audience(ENG))} == {"pub", "eng"}
        assert {d.doc_id for d in filled.list_documents(audience("D0DIRECT"))} == {"pub"}

    @pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
    def test_private_document_never_reaches_another_channel_even_with_its_exact_text(self, filled, mode):
        for channel in (ENG, GENERAL, "G0PRIVATE", "D0DIRECT"):
            hits = filled.search(request(SECRET, mode=mode), audience(channel))
            assert all(h.chunk.doc_id != "fin" for h in hits), (channel, mode)
            assert all(h.chunk.scope.is_public or channel in h.chunk.scope.labels for h in hits)

    @pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
    def test_private_document_reaches_its_own_channel(self, filled, mode):
        hits = filled.search(request(SECRET, mode=mode), audience(FIN))
        assert hits and hits[0].chunk.doc_id == "fin"

    def test_public_documents_reach_every_conversation(self, filled):
        for channel in (ENG, FIN, GENERAL, "D0DIRECT"):
            hits = filled.search(request("holiday paid leave"), audience(channel))
            assert hits[0].chunk.doc_id == "pub"

    def test_search_refuses_to_run_without_an_access_filter(self, filled):
        with pytest.raises(LorebotError, match="access filter"):
            filled.search(request("holiday"), None)

    def test_results_are_ranked_and_limited(self, filled):
        hits = filled.search(request("pager rollback holiday office", k=3), audience(ENG))
        assert len(hits) == 3
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    def test_similarity_is_the_cosine_of_question_and_chunk(self, filled):
        hits = filled.search(request("the pager escalates after fifteen minutes"), audience(ENG))
        assert hits[0].chunk.text == "the pager escalates after fifteen minutes"
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)

    def test_keyword_search_finds_a_rare_word(self, filled):
        hits = filled.search(request("zebra", mode="bm25"), audience(FIN))
        assert [h.chunk.doc_id for h in hits] == ["fin"]

    def test_upsert_replaces_every_chunk_of_a_document(self, filled):
        filled.upsert_documents({"eng": chunks("eng", ["brand new runbook text"], Scope.channels([ENG]))})
        filled.optimize()
        texts = [c.text for c in filled.chunks_of("eng")]
        assert texts == ["brand new runbook text"]
        hits = filled.search(request("pager escalates", mode="bm25"), audience(ENG))
        assert all(h.chunk.doc_id != "eng" or "pager" not in h.chunk.text for h in hits)

    def test_upsert_leaves_other_documents_alone(self, filled):
        filled.upsert_documents({"eng": chunks("eng", ["x"], Scope.channels([ENG]))})
        assert len(filled.chunks_of("pub")) == 2 and len(filled.chunks_of("fin")) == 1

    def test_rescope_changes_who_sees_it_and_keeps_vectors(self, filled):
        before = filled.chunks_of("fin")
        filled.rescope_document("fin", Scope.channels([FIN, ENG]))
        after = filled.chunks_of("fin")
        assert [c.text for c in after] == [c.text for c in before]
        np.testing.assert_allclose(np.asarray(after[0].vector), np.asarray(before[0].vector))
        assert filled.search(request(SECRET), audience(ENG))[0].chunk.doc_id == "fin"
        assert all(h.chunk.doc_id != "fin" for h in filled.search(request(SECRET), audience(GENERAL)))

    def test_delete_removes_a_document(self, filled):
        filled.delete_document("eng")
        assert filled.chunks_of("eng") == []
        assert {d.doc_id for d in filled.list_documents()} == {"pub", "fin"}

    def test_chunks_come_back_in_order_with_vectors(self, filled):
        got = filled.chunks_of("pub")
        assert [c.position for c in got] == [0, 1]
        np.testing.assert_allclose(np.asarray(got[1].vector), vector_for("office opens at nine"), atol=1e-6)

    def test_a_reader_never_sees_half_a_replacement(self, filled):
        versions = {
            "a": chunks("eng", ["alpha one", "alpha two", "alpha three"], Scope.channels([ENG])),
            "b": chunks("eng", ["beta one", "beta two"], Scope.channels([ENG])),
        }
        seen, stop = [], threading.Event()

        def read() -> None:
            while not stop.is_set():
                seen.append(frozenset(c.text for c in filled.chunks_of("eng")))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(12):
                filled.upsert_documents({"eng": versions["ab"[i % 2]]})
        finally:
            stop.set()
            reader.join()
        original = frozenset(["the pager escalates after fifteen minutes", "rollback with deploy revert"])
        allowed = {original, *(frozenset(c.text for c in v) for v in versions.values())}
        assert seen and set(seen) <= allowed, set(seen) - allowed

    def test_export_yields_whole_documents_with_vectors_and_scopes(self, filled):
        batches = list(filled.export_documents(batch_chunks=2))
        seen: dict[str, list] = {}
        for batch in batches:
            for doc_id, got in batch.items():
                assert doc_id not in seen, f"{doc_id} was split across batches"
                seen[doc_id] = got
        assert len(batches) >= 2
        assert {d: [c.position for c in got] for d, got in seen.items()} == {"pub": [0, 1], "eng": [0, 1], "fin": [0]}
        np.testing.assert_allclose(np.asarray(seen["pub"][1].vector), vector_for("office opens at nine"), atol=1e-6)
        assert seen["fin"][0].scope == Scope.channels([FIN]) and seen["fin"][0].text == SECRET

    def test_export_of_an_empty_store_yields_nothing(self, store):
        assert list(store.export_documents()) == []

    def test_writes_inside_the_exclusive_writer_go_through_and_it_nests(self, store):
        # An ingest holds it around all its writes; each write (and a nested holder) must not wait on it.
        with store.exclusive_writer():
            with store.exclusive_writer():
                store.upsert_documents({"eng": chunks("eng", ["the pager escalates"], Scope.channels([ENG]))})
            store.rescope_document("eng", Scope.channels([FIN]))
            store.optimize()
        with store.exclusive_writer():  # released after the outermost block
            store.delete_document("eng")
        assert store.count() == 0
