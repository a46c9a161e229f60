"""Fusing the ranked lists of the dense and the BM25 retriever into one.

Relative-score fusion: each list's scores are min-max normalised to [0, 1] and combined with
weights, so a strong lead in one retriever survives fusion (reciprocal-rank fusion would flatten it).
A chunk missing from one list gets 0 from that list.

>>> fuse({"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 3.0}, dense_weight=0.6)
[('a', 0.6), ('b', 0.4), ('c', 0.0)]
"""

from __future__ import annotations


def normalise(scores: dict[str, float]) -> dict[str, float]:
    """Min-max normalise; a single hit (or all equal) gets 1.0."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    if span <= 1e-12:
        return {key: 1.0 for key in scores}
    return {key: (value - low) / span for key, value in scores.items()}


def fuse(
    dense: dict[str, float], keyword: dict[str, float], *, dense_weight: float
) -> list[tuple[str, float]]:
    """Combine two ``{id: score}`` maps into one list, best first (ties broken by id)."""
    dense_n, keyword_n = normalise(dense), normalise(keyword)
    combined = {
        key: dense_weight * dense_n.get(key, 0.0) + (1.0 - dense_weight) * keyword_n.get(key, 0.0)
        for key in dense_n.keys() | keyword_n.keys()
    }
    return sorted(combined.items(), key=lambda item: (-item[1], item[0]))
