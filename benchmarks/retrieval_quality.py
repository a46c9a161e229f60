"""Retrieval quality on BEIR SciFact: lorebot's defaults next to the common RAG pipeline, in one run.

    .venv/bin/python benchmarks/retrieval_quality.py [--scifact DIR] [--split test]

Both systems see the same corpus, the same test queries and the same machine:

- **common pipeline**, as most RAG tutorials build it: each document (title and abstract) encoded
  whole by all-MiniLM-L6-v2 (truncated at the model's 256 tokens), exact cosine search over all of
  them, the question encoded by sentence-transformers (PyTorch). Vectors are cached in the out dir.
- **lorebot**, with every default setting: the corpus ingested through the real pipeline (chunked,
  titles in context, BM25 and vectors) by ``Services.build_eval_index`` — the code behind
  ``lorebot eval retrieval`` — and every query run through the real ``Retriever`` in each mode,
  set up as the bot runs (ONNX question encoder, vectors in memory).

Latency is per query, embedding the question included, top 100 documents. The references the
issue quotes (measured on this machine with bm25s and a plain RRF) are printed beside, marked as
quoted. The 300 queries are also split in two fixed halves by a hash of their IDs: the fusion
defaults were chosen looking at half A only; half B is the held-out check.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LANCEDB_LOG", "error")

from benchmarks.common import (  # noqa: E402
    DEFAULT_OUT_DIR, SCIFACT_DIR, embed_cached, emit_json, log, print_table, source_digests,
)
from bot.app import build_services  # noqa: E402
from bot.config import load_settings  # noqa: E402
from knowledge.evaluation.beir import BeirDataset, load_beir  # noqa: E402
from knowledge.evaluation.metrics import score_run  # noqa: E402
from knowledge.evaluation.runner import RANKING_DEPTH, EvalResult, run_queries  # noqa: E402

BENCHMARK = "retrieval_quality"
TARGETS = {"ndcg@10": 0.73, "recall@100": 0.95}
QUOTED_REFERENCES = [  # from the issue: measured on this machine on the same data, not rerun here
    ("dense MiniLM, whole documents, exact (reference)", "dense", 0.645),
    ("BM25, bm25s with stemming and stop words (reference)", "bm25", 0.686),
    ("plain RRF of those two (reference)", "hybrid", 0.718),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact", type=Path, default=SCIFACT_DIR, help="BEIR SciFact folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--modes", default="hybrid,dense,bm25", help="lorebot modes to run (comma-separated)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="caches and the eval index")
    return parser.parse_args(argv)


def half_of(query_id: str) -> str:
    """A fixed split of the queries: A (looked at while choosing defaults) and B (held out)."""
    return "AB"[int(hashlib.sha256(query_id.encode()).hexdigest(), 16) % 2]


def by_half(run: dict[str, list[str]], dataset: BeirDataset) -> dict[str, float]:
    return {
        half: round(score_run(run, {q: j for q, j in dataset.qrels.items() if half_of(q) == half})["ndcg@10"], 4)
        for half in "AB"
    }


def common_pipeline(dataset: BeirDataset, embedder, out_dir: Path) -> EvalResult:
    """Whole documents, one vector each, exact cosine search; the question encoded by PyTorch."""
    texts = [f"{d.title} {d.text}".strip() for d in dataset.corpus]
    vectors = embed_cached(embedder, texts, out_dir)
    doc_ids = [d.doc_id for d in dataset.corpus]
    model = embedder.model  # plain sentence-transformers, as a tutorial calls it

    def search(text: str) -> list[str]:
        question = model.encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
        scores = vectors @ question
        top = np.argpartition(-scores, RANKING_DEPTH)[:RANKING_DEPTH]
        return [doc_ids[i] for i in top[np.argsort(-scores[top])]]

    for text in list(dataset.queries.values())[:3]:
        search(text)  # warm-up, untimed
    run, latencies = {}, []
    for query_id, text in dataset.queries.items():
        started = time.perf_counter()
        run[query_id] = search(text)
        latencies.append((time.perf_counter() - started) * 1000)
    return EvalResult(metrics=score_run(run, dataset.qrels), latencies_ms=latencies,
                      queries=len(dataset.queries), run=run)


def row(name: str, mode: str, result: EvalResult, dataset: BeirDataset) -> dict:
    return {"system": name, "mode": mode, **{k: round(v, 4) for k, v in result.metrics.items()},
            "ndcg@10_by_half": by_half(result.run, dataset), "latency_ms": result.latency()}


def results_table(rows: list[dict], dataset: BeirDataset, index: dict) -> Table:
    table = Table(title=f"SciFact {dataset.split}: {len(dataset.queries)} queries, {len(dataset.corpus)} documents "
                        f"(lorebot: {index['chunks']} chunks)")
    for column in ("system", "nDCG@10", "half A / B", "R@10", "R@100", "MRR@10", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for r in rows:
        if "quoted" in r:
            table.add_row(f"[dim]{r['system']}[/]", f"[dim]{r['ndcg@10']:.3f}[/]", *[""] * 6)
            continue
        halves = r["ndcg@10_by_half"]
        table.add_row(r["system"], f"{r['ndcg@10']:.4f}", f"{halves['A']:.3f} / {halves['B']:.3f}",
                      f"{r['recall@10']:.4f}", f"{r['recall@100']:.4f}", f"{r['mrr@10']:.4f}",
                      f"{r['latency_ms']['p50']:.1f}", f"{r['latency_ms']['p95']:.1f}")
    return table


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests()
    started = time.perf_counter()
    dataset = load_beir(args.scifact, args.split)
    services = build_services(load_settings(data_dir=args.out_dir / "eval-data"), long_running=True)
    log(f"lorebot: indexing {len(dataset.corpus)} documents (cached after the first run) …")
    store, index = services.build_eval_index(
        dataset, progress=lambda done, total: done % 500 == 0 and log(f"  {done}/{total} documents"))
    rows = []
    try:
        retriever = services.retriever_for(store)
        for mode in args.modes.split(","):
            log(f"lorebot: {mode} …")
            rows.append(row(f"lorebot {mode}", mode, run_queries(retriever, dataset, mode=mode), dataset))
    finally:
        store.close()
    log("common pipeline: whole-document vectors (cached after the first run) …")
    rows.append(row("common pipeline (whole documents, exact cosine)", "dense",
                    common_pipeline(dataset, services.embedder, args.out_dir), dataset))
    rows.extend({"system": name, "mode": mode, "ndcg@10": value, "quoted": True} for name, mode, value in QUOTED_REFERENCES)
    services.close()
    index_info = {"documents": index.documents, "chunks": index.chunks, "cached": index.cached,
                  "seconds": round(index.seconds, 1)}
    print_table(results_table(rows, dataset, index_info))
    hybrid = next((r for r in rows if r["system"] == "lorebot hybrid"), None)
    met = hybrid is not None and all(hybrid[k] >= v for k, v in TARGETS.items())
    results = {"rows": rows, "index": index_info, "targets": TARGETS, "targets_met": met,
               "settings": {"chunk_tokens": services.chunking.max_tokens,
                            "overlap_tokens": services.chunking.overlap_tokens,
                            **{k: v for k, v in vars(services.retrieval_options).items()}},
               "model_id": services.embedder.model_id, "elapsed_s": round(time.perf_counter() - started, 1)}
    emit_json(BENCHMARK, results, sources=sources)
    return results


if __name__ == "__main__":
    main()
