"""The in-memory vector copy, laid out by scope: the same top k as scoring every visible row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from knowledge.stores import memory_vectors
from knowledge.stores.memory_vectors import VectorSnapshot

DIMENSION = 16


def _table(rng: np.random.Generator, rows: int, scopes: list[list[str]]) -> pa.Table:
    vectors = rng.standard_normal((rows, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picked = [scopes[i] for i in rng.integers(0, len(scopes), rows)]
    return pa.table({
        "chunk_id": [f"c{i}" for i in range(rows)],
        "_rowid": pa.array(rng.permutation(rows) + 1000, pa.uint64()),
        "scope": picked,
        "vector": pa.array(list(vectors), pa.list_(pa.float32(), DIMENSION)),
    })


def _brute_force(table: pa.Table, query: np.ndarray, allowed: frozenset[str], k: int) -> list[str]:
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False))
    visible = [i for i, labels in enumerate(table["scope"].to_pylist()) if allowed & set(labels)]
    scores = vectors[visible] @ query
    return [table["chunk_id"][visible[i]].as_py() for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("distinct_scopes", [4, 2500], ids=["few-runs", "more-runs-than-calls-pay-for"])
def test_nearest_is_exact_filtered_search_whatever_the_scopes(distinct_scopes):
    rng = np.random.default_rng(distinct_scopes)
    channels = [f"C0CH{i:03d}" for i in range(100)]
    scopes = [["public"]] + [sorted({channels[a], channels[b]}) for a, b in rng.integers(0, 100, (distinct_scopes, 2))]
    table = _table(rng, 5000, scopes)
    snapshot = VectorSnapshot.from_arrow(version=1, table=table)
    every_other = frozenset(channels[::2])
    runs = len(snapshot._visible_runs(every_other).starts)
    assert (runs > memory_vectors._MAX_RUNS) == (distinct_scopes > 1000)  # both ways of scoring are tested
    by_chunk = dict(zip(table["chunk_id"].to_pylist(), table["_rowid"].to_pylist()))
    for allowed in (frozenset({"public"}), frozenset({"C0CH003"}), frozenset({"public", *channels[:30]}),
                    every_other, frozenset({"C0NOBODY"})):
        query = table["vector"][int(rng.integers(5000))].values.to_numpy()
        found = snapshot.nearest(query, allowed, k=10)
        assert list(found) == _brute_force(table, query, allowed, 10)
        # Row IDs and rows travel with their chunk through the regrouping.
        assert all(row_id == by_chunk[chunk_id] for chunk_id, (_, row_id) in found.items())
        rows = snapshot.rows([row_id for _, row_id in found.values()])
        assert [r["chunk_id"] for r in rows or []] == list(found)


def test_labels_in_any_order_are_one_scope_group():
    rng = np.random.default_rng(1)
    table = _table(rng, 200, [["C0A", "C0B"], ["C0B", "C0A"], ["public"]])
    snapshot = VectorSnapshot.from_arrow(version=1, table=table)
    assert sorted((sorted(labels), end - start) for labels, start, end in snapshot.groups)[0][0] == ["C0A", "C0B"]
    assert len(snapshot.groups) == 2


def test_an_empty_copy_finds_nothing():
    empty = _table(np.random.default_rng(0), 0, [["public"]])
    snapshot = VectorSnapshot.from_arrow(version=1, table=empty)
    assert snapshot.nearest(np.ones(DIMENSION, np.float32), frozenset({"public"}), k=5) == {}
    assert snapshot.rows([1]) is None
