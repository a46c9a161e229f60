"""Ranking metrics, computed the way BEIR (pytrec_eval) computes them.

``ranked`` is a list of document IDs, best first; ``judged`` maps document IDs to graded
relevance (0 or missing: not relevant). nDCG uses the grades as gains; recall and MRR count any
grade above 0 as relevant.

>>> judged = {"a": 1, "c": 2}
>>> round(ndcg_at_k(["a", "b", "c"], judged, 10), 4)
0.7602
>>> recall_at_k(["a", "b", "c"], judged, 2), mrr_at_k(["b", "a"], judged, 10)
(0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    """Discounted gain of the top ``k`` over that of the ideal ordering of the judgements."""
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(judged.get(doc, 0), 0) for doc in _unique(ranked)[:k]]) / ideal


def recall_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    """The share of the relevant documents found in the top ``k``."""
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(_unique(ranked)[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    """1 / the rank of the first relevant document in the top ``k`` (0 if there is none)."""
    for rank, doc in enumerate(_unique(ranked)[:k], start=1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def _unique(ranked: Sequence[str]) -> list[str]:
    """A document counts once, at its best rank (a ranking may list it twice)."""
    return list(dict.fromkeys(ranked))


METRICS = {
    "ndcg@10": lambda ranked, judged: ndcg_at_k(ranked, judged, 10),
    "recall@10": lambda ranked, judged: recall_at_k(ranked, judged, 10),
    "recall@100": lambda ranked, judged: recall_at_k(ranked, judged, 100),
    "mrr@10": lambda ranked, judged: mrr_at_k(ranked, judged, 10),
}


def score_run(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Each metric, averaged over the judged queries (a query missing from ``run`` scores 0).

    >>> score_run({"q1": ["a"], "q2": ["x"]}, {"q1": {"a": 1}, "q2": {"b": 1}})["ndcg@10"]
    0.5
    """
    if not qrels:
        return {name: 0.0 for name in METRICS}
    return {
        name: sum(metric(run.get(q, []), judged) for q, judged in qrels.items()) / len(qrels)
        for name, metric in METRICS.items()
    }
