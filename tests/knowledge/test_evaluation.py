"""Retrieval evaluation: metrics on hand-computed cases, the BEIR loader's errors, the index cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from knowledge.chunking import ChunkingOptions
from knowledge.errors import DatasetError
from knowledge.evaluation.beir import load_beir
from knowledge.evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k, score_run
from knowledge.evaluation.runner import build_eval_index, index_key, run_queries
from knowledge.ingest import Ingestor
from knowledge.retrieval import Retriever
from knowledge.stores.lancedb import LanceStore

# --- metrics ---------------------------------------------------------------------------------


def test_ndcg_hand_computed_with_grades():
    # DCG = 2/log2(2) + 0 + 1/log2(4) = 2.5; ideal = 2/log2(2) + 1/log2(3) = 2.6309
    assert ndcg_at_k(["a", "x", "b"], {"a": 2, "b": 1}, 10) == pytest.approx(2.5 / (2 + 1 / math.log2(3)))


def test_ndcg_bounds_and_cutoff():
    judged = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "x"], judged, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], judged, 10) == 0.0
    # b at rank 3 is outside the top 2: only a counts, against an ideal of two relevant documents.
    assert ndcg_at_k(["a", "x", "b"], judged, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_ignores_zero_and_negative_grades_and_duplicates():
    assert ndcg_at_k(["n", "a"], {"a": 1, "n": 0}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["m", "a"], {"a": 1, "m": -1}, 10) == pytest.approx(1 / math.log2(3))


def test_recall_and_mrr():
    judged = {"a": 1, "b": 1, "c": 1, "z": 0}
    assert recall_at_k(["a", "x", "b", "c"], judged, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["z"], judged, 10) == 0.0
    assert mrr_at_k(["x", "y", "b"], judged, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b"], judged, 2) == 0.0


def test_score_run_averages_over_judged_queries_and_counts_missing_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    scores = score_run({"q1": ["a"]}, qrels)
    assert scores == {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


# --- the BEIR loader ---------------------------------------------------------------------------

CORPUS = [
    {"_id": "d1", "title": "Vacation policy", "text": "Employees get 25 days of paid vacation each year."},
    {"_id": "d2", "title": "On-call", "text": "The on-call stipend is paid weekly to the engineer on call."},
    {"_id": "d3", "title": "Expenses", "text": "Submit receipts within thirty days to be reimbursed for travel."},
    {"_id": 4, "title": "Laptops", "text": "Every engineer receives a laptop, replaced every three years."},
]
QUERIES = [
    {"_id": "q1", "text": "how many vacation days do employees get"},
    {"_id": "q2", "text": "when is the on-call stipend paid"},
    {"_id": "q3", "text": "how often are laptops replaced"},
    {"_id": "q4", "text": "a query judged only as not relevant"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\t4\t2\nq3\tgone\t1\nq4\td3\t0\n"


def write_dataset(folder: Path, *, corpus=CORPUS, queries=QUERIES, qrels=QRELS, split="test") -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    return folder


def test_loads_a_beir_folder(tmp_path):
    ds = load_beir(write_dataset(tmp_path / "mini"), "test")
    assert ds.name == "mini" and ds.split == "test"
    assert [d.doc_id for d in ds.corpus] == ["d1", "d2", "d3", "4"]  # numeric IDs become strings
    # q4 has no relevant document: it cannot be scored, so it is not asked.
    assert set(ds.queries) == {"q1", "q2", "q3"}
    assert ds.qrels["q3"] == {"4": 2}
    assert ds.unknown_documents == 1  # q3's judgement of a document missing from the corpus
    assert len(ds.corpus_sha256) == 64


def test_malformed_corpus_line_is_named_with_its_number(tmp_path):
    folder = write_dataset(tmp_path / "bad")
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines.insert(2, '{"_id": "d9", "text": "unterminated')
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:3: not valid JSON"):
        load_beir(folder)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('["not", "an", "object"]', r"queries\.jsonl:2: expected a JSON object"),
        ('{"text": "no id"}', r"queries\.jsonl:2: field '_id' is missing"),
        ('{"_id": "q9", "text": 7}', r"queries\.jsonl:2: field 'text' is missing or not a string"),
    ],
)
def test_malformed_query_lines(tmp_path, line, message):
    folder = write_dataset(tmp_path / "bad")
    lines = (folder / "queries.jsonl").read_text().splitlines()
    lines.insert(1, line)
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_beir(folder)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n", r"test\.tsv:3: expected 3 tab-separated columns"),
        ("q1\td1\t1\nq2\td2\thigh\n", r"test\.tsv:2: the score 'high' is not a whole number"),
        ("q1\td1\t1\nq77\td2\t1\n", r"test\.tsv:2: query 'q77' is not in queries\.jsonl"),
        ("q4\td3\t0\n", r"no query has a relevant document"),
    ],
)
def test_malformed_qrels(tmp_path, qrels, message):
    with pytest.raises(DatasetError, match=message):
        load_beir(write_dataset(tmp_path / "bad", qrels=qrels))


def test_duplicate_document_and_missing_split(tmp_path):
    folder = write_dataset(tmp_path / "dup", corpus=[*CORPUS, CORPUS[0]])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:5: document 'd1' already appeared on line 1"):
        load_beir(folder)
    with pytest.raises(DatasetError, match=r"qrels/dev\.tsv: no such file"):
        load_beir(write_dataset(tmp_path / "ok"), "dev")


# --- the cached index and the run --------------------------------------------------------------


def _build(dataset, cache_root, embedder, chunking=ChunkingOptions()):
    return build_eval_index(
        dataset, cache_root=cache_root,
        open_store=lambda path: LanceStore(path, dimension=embedder.dimension, model_id=embedder.model_id),
        ingestor_for=lambda store: Ingestor(store=store, embedder=embedder, chunking=chunking),
        model_id=embedder.model_id, chunking=chunking,
    )


def test_index_is_cached_by_corpus_and_settings(tmp_path, hashing_embedder):
    dataset = load_beir(write_dataset(tmp_path / "mini"))
    store, first = _build(dataset, tmp_path / "cache", hashing_embedder)
    store.close()
    embedded = hashing_embedder.encoded
    assert not first.cached and first.documents == 4 and first.chunks >= 4 and embedded >= 4

    store, again = _build(dataset, tmp_path / "cache", hashing_embedder)
    store.close()
    assert again.cached and again.path == first.path and again.chunks == first.chunks
    assert hashing_embedder.encoded == embedded  # nothing embedded the second time

    # Other chunking: another index, embedded afresh.
    store, other = _build(dataset, tmp_path / "cache", hashing_embedder, ChunkingOptions(max_tokens=64, overlap_tokens=8))
    store.close()
    assert other.path != first.path and not other.cached and hashing_embedder.encoded > embedded

    # A changed corpus file: another key.
    changed = load_beir(write_dataset(tmp_path / "mini", corpus=[*CORPUS, {"_id": "d5", "text": "New."}]))
    assert index_key(changed, model_id="m", chunking=ChunkingOptions()) != index_key(dataset, model_id="m", chunking=ChunkingOptions())


def test_an_interrupted_build_resumes_without_embedding_again(tmp_path, hashing_embedder):
    dataset = load_beir(write_dataset(tmp_path / "mini"))
    store, first = _build(dataset, tmp_path / "cache", hashing_embedder)
    store.close()
    (first.path / "complete.json").unlink()  # as if the process died before finishing
    embedded = hashing_embedder.encoded
    store, resumed = _build(dataset, tmp_path / "cache", hashing_embedder)
    store.close()
    assert resumed.cached and resumed.chunks == first.chunks and hashing_embedder.encoded == embedded
    assert (first.path / "complete.json").is_file()


def test_run_scores_rankings_from_the_real_retrieval_path(tmp_path, hashing_embedder):
    dataset = load_beir(write_dataset(tmp_path / "mini"))
    store, _ = _build(dataset, tmp_path / "cache", hashing_embedder)
    try:
        retriever = Retriever(store=store, embedder=hashing_embedder)
        for mode in ("hybrid", "dense", "bm25"):
            result = run_queries(retriever, dataset, mode=mode)
            assert result.queries == 3 and len(result.latencies_ms) == 3
            # Each query shares its distinctive words with its one relevant document.
            assert result.run["q1"][0] == "d1" and result.run["q2"][0] == "d2" and result.run["q3"][0] == "4"
            assert result.metrics["mrr@10"] == pytest.approx(1.0)
            assert set(result.latency()) == {"p50", "p95"}
    finally:
        store.close()
