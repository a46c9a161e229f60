"""In-memory keyword search: the same scores as LanceDB's full-text index, from the current tables only."""

from __future__ import annotations

import time

import numpy as np
import pytest

from knowledge.access import Scope
from knowledge.stores.lancedb import LanceStore
from knowledge.stores.memory_keywords import Analyzer, KeywordSnapshot
from tests.knowledge.store_contract import DIMENSION, audience, chunks, request

# Words that exercise each step of the analysis: stop words before and after stemming ("because"
# stays as "becaus", "doing" goes as "do"), inflections, case, accents folded after stemming
# ("École" is indexed as "ecole"), ligature-like letters, fractions, digits inside words, and
# tokens around the 40-byte limit.
VOCABULARY = (
    "the a of and because doing having being very only any above why does during once "
    "restart restarts restarted restarting RESTART Restarting pod pods node nodes cluster clusters "
    "payment payments paying paid treasurer signature signatures vendor vendors invoice invoices "
    "deploy deploys deployment deployments rollback rollbacks incident incidents outage outages "
    "naïve naive École ecole école café cafe Æsir aesir Øresund łódź straße ¼ ½ "
    "HIV-1 N348I x2y a1b2 covid19 2024 v2 "
    + "b" * 38 + " " + "c" * 39 + " " + "d" * 40 + " " + "e" * 45
).split()


def _corpus(rng: np.random.Generator, documents: int = 60) -> dict[str, list]:
    channels = ["C0FIN", "C0OPS", "C0ENG"]
    corpus = {}
    for d in range(documents):
        texts = [" ".join(rng.choice(VOCABULARY, size=rng.integers(3, 30))) for _ in range(rng.integers(1, 4))]
        pick = rng.integers(0, 5)
        scope = Scope.public() if pick >= 3 else Scope.channels([channels[pick], *(["C0ENG"] if d % 7 == 0 else [])])
        corpus[f"doc{d}"] = chunks(f"doc{d}", texts, scope, title=str(rng.choice(VOCABULARY)))
    return corpus


QUESTIONS = [
    "why do pods restart", "Restarting the CLUSTER nodes", "vendor payments need the treasurer signature",
    "naive cafe", "naïve café", "ecole", "École", "aesir Oresund lodz", "straße strasse", "14 12 ¼",
    "HIV 1 N348I", "restart restart restart", "because doing", "the of and", "nothing matches this",
    "b" * 38, "c" * 39, "d" * 40,
]


@pytest.fixture
def store(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True, keyword_settle_s=60)
    store.upsert_documents(_corpus(np.random.default_rng(7)))
    store.optimize()  # LanceDB's full-text indexes cover every row
    yield store
    store.close()


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(a[k])) for k in a)


def test_scores_are_lancedbs_own_for_every_question_and_audience(store):
    assert store.prepare_keyword_index()
    keywords = store._keywords
    for channel in ("C0FIN", "C0OPS", "C0ENG", "C0NONE"):
        access = audience(channel)
        for question in QUESTIONS:
            # A limit above the number of matches: whole result sets are compared, no cut-off ties.
            lance = {c: s for c, (s, _, _) in store._keyword_ids(question, access.lance_where(), 1000).items()}
            ours = {c: s for c, (s, _, _) in keywords.chunk_matches(question, access.allowed, 1000).items()}
            assert _close(lance, ours), (channel, question)
            lance_docs = store._document_scores(question, access.lance_where(), 1000)
            assert _close(lance_docs, keywords.document_scores(question, access.allowed, 1000)), (channel, question)


def test_some_questions_match_nothing_and_the_rest_match_only_what_the_audience_sees(store):
    store.prepare_keyword_index()
    keywords = store._keywords
    assert keywords.chunk_matches("nothing matches this", frozenset({"public"}), 50) == {}
    assert keywords.chunk_matches("d" * 40, frozenset({"public", "C0FIN"}), 50) == {}  # too long to index
    matches = keywords.chunk_matches("restart payments", frozenset({"C0FIN"}), 50)
    assert matches
    scopes = {c.chunk_id: c.scope for doc in store.export_documents() for chunks_ in doc.values() for c in chunks_}
    assert all(scopes[c].as_list() == ["C0FIN"] or "C0FIN" in scopes[c].as_list() for c in matches)


def test_analyzer_follows_lancedbs_order_of_steps():
    analyzer = Analyzer()
    assert analyzer.terms("because doing having") == ["becaus"]  # stop words looked up after stemming
    assert analyzer.terms("École ecole") == ["ecole", "ecol"]  # folded after stemming
    assert analyzer.terms("Æsir ¼ HIV-1") == ["aesir", "14", "hiv", "1"]
    assert analyzer.terms("c" * 39 + " " + "d" * 40) == ["c" * 39]


def test_keyword_searches_rank_the_same_from_memory_as_from_lancedb(store, tmp_path):
    store.prepare_keyword_index()
    one_shot = LanceStore(tmp_path, dimension=DIMENSION, model_id="m")
    for question in QUESTIONS:
        ours = {h.chunk.chunk_id: h.score for h in store.search(request(question, mode="bm25", k=50), audience("C0OPS"))}
        theirs = {h.chunk.chunk_id: h.score for h in one_shot.search(request(question, mode="bm25", k=50), audience("C0OPS"))}
        # The same scores in the same order. (Chunks that tie at the 50-candidate cut may be taken
        # either way, which changes only the bottom of the list: compare the top 20.)
        top = 20
        assert np.allclose(sorted(ours.values(), reverse=True)[:top], sorted(theirs.values(), reverse=True)[:top],
                           rtol=1e-5), question
        assert all(abs(ours[c] - theirs[c]) <= 1e-5 * ours[c] for c in ours.keys() & theirs.keys()), question
    one_shot.close()


def test_keyword_search_is_answered_from_memory_once_the_postings_are_ready(store, monkeypatch):
    question = request("vendor payments treasurer", mode="bm25")
    asked_lancedb = []
    for name in ("_keyword_ids", "_document_scores"):
        original = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *args, _original=original: asked_lancedb.append(1) or _original(*args))
    before = [h.chunk.chunk_id for h in store.search(question, audience("C0FIN"))]
    assert asked_lancedb == [1, 1]  # not built yet (they settle for a minute in this store)
    assert store.prepare_keyword_index()
    assert [h.chunk.chunk_id for h in store.search(question, audience("C0FIN"))] == before
    assert asked_lancedb == [1, 1]


def test_a_write_makes_searches_ask_lancedb_until_the_postings_are_rebuilt(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True, keyword_settle_s=0.05)
    store.upsert_documents({
        "pay": chunks("pay", ["vendor payments need the treasurer"], Scope.public()),
        "ops": chunks("ops", ["pods restart nightly"], Scope.public()),
    })
    store.optimize()
    assert store.prepare_keyword_index()
    built_for = store._keywords.versions

    # Moved to a private channel: the very next search must not show it to anyone else, though the
    # postings in memory still hold the old scope.
    store.rescope_document("pay", Scope.channels(["C0FIN"]))
    found = store.search(request("vendor payments treasurer", mode="bm25"), audience("C0ENG"))
    assert [h.chunk.doc_id for h in found] == []
    # ... and the postings follow in the background once the writes settle.
    deadline = time.monotonic() + 20
    while (store._keywords.versions == built_for) and time.monotonic() < deadline:
        store.search(request("pods", mode="bm25"), audience("C0ENG"))
        time.sleep(0.05)
    assert store._keywords.versions != built_for
    assert store._keywords.chunk_matches("vendor payments", frozenset({"public", "C0ENG"}), 10) == {}
    assert list(store._keywords.chunk_matches("vendor payments", frozenset({"C0FIN"}), 10)) == ["pay:0"]
    store.close()


def test_tables_at_the_ann_threshold_keep_lancedbs_full_text_search(tmp_path):
    store = LanceStore(tmp_path, dimension=DIMENSION, model_id="m", vectors_in_memory=True, ann_min_rows=2)
    store.upsert_documents({"a": chunks("a", ["one", "two", "three"], Scope.public())})
    assert not store.prepare_keyword_index()
    assert store._keywords is None
    assert [h.chunk.chunk_id for h in store.search(request("two", mode="bm25"), audience("C0X"))] == ["a:1"]


def test_without_a_documents_table_chunk_scores_rank_alone_as_they_do_in_lancedb(store):
    store._db.drop_table("documents")
    store._documents = None
    assert store.prepare_keyword_index()
    assert store._keywords.documents is None
    assert store._keywords.document_scores("pods restart", frozenset({"public"}), 10) == {}


def test_an_empty_table_has_empty_postings():
    import pyarrow as pa
    empty = pa.table({"chunk_id": pa.array([], pa.string()), "doc_id": pa.array([], pa.string()),
                      "scope": pa.array([], pa.list_(pa.string())), "search_text": pa.array([], pa.string()),
                      "_rowid": pa.array([], pa.uint64())})
    snapshot = KeywordSnapshot.from_arrow(versions=(1, None), chunks=empty, documents=None)
    assert snapshot.chunk_matches("anything", frozenset({"public"}), 10) == {}


def test_a_documents_table_of_another_layout_leaves_chunk_scores_to_rank_alone(store, caplog):
    store._db.drop_table("documents")
    store._db.create_table("documents", data=[{"doc_id": "doc1", "search_text": "an older layout"}])
    store._documents = store._open_documents()
    with caplog.at_level("WARNING"):
        assert store.prepare_keyword_index()
    assert "another layout" in caplog.text
    assert store._keywords.documents is None
    assert store._keywords.chunk_matches("pods restart", frozenset({"public"}), 10)
