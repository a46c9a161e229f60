"""Exact dense search over an in-memory copy of a table's vectors (and its rows, for reading winners).

Up to a few hundred thousand chunks, one matrix-vector product over the vectors an audience may
see is faster than any index a query engine can walk, and it is exact: no recall to tune, no small
channel an approximate index could miss. The product reads every vector it scores (154 MB for
100k × 384 floats), so memory bandwidth sets the pace; the copy is therefore laid out by scope:
rows with the same labels sit together, and an audience's visible rows are a few contiguous runs
(public, its channel, the documents shared with another), scored where they lie, with nothing
gathered and nothing it may not see read at all. The access filter is a pre-filter here: only
rows whose scope holds an allowed label are ever scored.

The store keeps one snapshot per table version and answers the dense half of a search from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from knowledge.stores.visible_rows import AudienceCache

# Past this many separate runs (a table whose documents each have a different set of channels),
# one product over the whole matrix and a gather of the visible scores is cheaper than a call per run.
_MAX_RUNS = 256
_LABEL_SEPARATOR = "\x1f"


def _similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` on the calling thread.

    Not through BLAS: the keyword search, the question encoder and the row fetch run beside it on
    a small machine, and BLAS workers spinning after their part was done took the cores from them
    (that doubled the p95 of the whole query); and OpenBLAS's single-threaded matrix-vector kernel
    ran at half of numpy's own loop on an AMD EPYC (13.9 ms against 6.5 ms at 100k × 384; both
    read the same 154 MB, numpy's at about the speed of a plain sum over it).
    """
    return np.einsum("ij,j->i", matrix, query)


@dataclass(frozen=True)
class _Runs:
    """The rows one audience may see: contiguous ``[starts[i], ends[i])`` runs, and their positions."""

    starts: np.ndarray
    ends: np.ndarray
    positions: np.ndarray


@dataclass
class VectorSnapshot:
    """Chunk IDs, row IDs, vectors and the other columns of one table version, grouped by scope.

    >>> table = pa.table({
    ...     "chunk_id": ["a", "b", "c"], "_rowid": pa.array([0, 1, 2], pa.uint64()),
    ...     "scope": [["public"], ["C0FINANCE"], ["C0FINANCE", "C0PEOPLE"]],
    ...     "vector": pa.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], pa.list_(pa.float32(), 2))})
    >>> snapshot = VectorSnapshot.from_arrow(version=1, table=table)
    >>> [(cid, round(sim, 2)) for cid, (sim, _) in snapshot.nearest(
    ...     np.array([0.0, 1.0], np.float32), frozenset({"public", "C0PEOPLE"}), k=5).items()]
    [('c', 0.8), ('a', 0.0)]
    """

    version: int
    row_ids: np.ndarray
    matrix: np.ndarray  # (rows, dimension) float32, rows grouped by scope
    columns: pa.Table  # every column but the vectors and row IDs, row for row
    groups: list[tuple[frozenset[str], int, int]]  # (labels, first row, end) of each scope group
    _by_row_id: np.ndarray  # positions sorted by row ID, to find rows by ID
    _runs: AudienceCache = field(default_factory=AudienceCache, repr=False)

    @classmethod
    def from_arrow(cls, *, version: int, table: pa.Table) -> VectorSnapshot:
        """From columns ``chunk_id``, ``_rowid``, ``scope`` (list of labels), ``vector`` (fixed size) and
        any others, which :meth:`rows` returns."""
        rows = table.num_rows
        dimension = table.schema.field("vector").type.list_size
        order, groups = _group_by_scope(table["scope"])
        # One copy of the vectors, chunk by chunk, each row straight to its place in the grouping
        # (no combined or unsorted intermediate: at 250k chunks the matrix alone is 384 MB).
        destination = np.empty(rows, dtype=np.int64)
        destination[order] = np.arange(rows)
        matrix = np.empty((rows, dimension), dtype=np.float32)
        start = 0
        for chunk in table["vector"].chunks:
            vectors = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dimension)
            matrix[destination[start:start + len(chunk)]] = vectors
            start += len(chunk)
        row_ids = table["_rowid"].to_numpy()[order]
        columns = table.drop_columns(["vector", "_rowid"]).take(pa.array(order)).combine_chunks()
        return cls(version=version, row_ids=row_ids, matrix=matrix, columns=columns, groups=groups,
                   _by_row_id=np.argsort(row_ids, kind="stable"))

    def __len__(self) -> int:
        return len(self.row_ids)

    def nearest(self, vector: np.ndarray, allowed: frozenset[str], *, k: int) -> dict[str, tuple[float, int]]:
        """``{chunk_id: (cosine similarity, row id)}`` of the ``k`` nearest rows ``allowed`` may see."""
        runs = self._visible_runs(allowed)
        if runs.positions.size == 0 or k <= 0:
            return {}
        query = np.asarray(vector, dtype=np.float32)
        if len(runs.starts) <= _MAX_RUNS:
            scores = np.concatenate([_similarities(self.matrix[a:b], query)
                                     for a, b in zip(runs.starts.tolist(), runs.ends.tolist())])
        else:
            scores = _similarities(self.matrix, query)[runs.positions]
        top = min(k, scores.size)
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best], kind="stable")]
        rows = runs.positions[best]
        chunk_ids = self.columns["chunk_id"].take(pa.array(rows)).to_pylist()
        return {
            chunk_id: (float(score), int(self.row_ids[row]))
            for chunk_id, row, score in zip(chunk_ids, rows.tolist(), scores[best].tolist())
        }

    def rows(self, row_ids: list[int]) -> list[dict] | None:
        """The rows with these IDs (all columns, ``vector`` as an array), or None if any is not here."""
        if len(self) == 0:
            return None
        wanted = np.asarray(row_ids, dtype=self.row_ids.dtype)
        found = np.searchsorted(self.row_ids, wanted, sorter=self._by_row_id)
        positions = self._by_row_id[np.minimum(found, len(self) - 1)]
        if not np.array_equal(self.row_ids[positions], wanted):
            return None
        rows = self.columns.take(pa.array(positions)).to_pylist()
        for row, position in zip(rows, positions.tolist()):
            row["vector"] = self.matrix[position]
        return rows

    def _visible_runs(self, allowed: frozenset[str]) -> _Runs:
        return self._runs.get(allowed, lambda: self._find_runs(allowed))

    def _find_runs(self, allowed: frozenset[str]) -> _Runs:
        starts, ends = [], []
        for labels, start, end in self.groups:
            if labels & allowed:
                if ends and ends[-1] == start:  # adjacent groups: one run
                    ends[-1] = end
                else:
                    starts.append(start)
                    ends.append(end)
        positions = (np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if starts
                     else np.zeros(0, dtype=np.int64))
        return _Runs(np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64), positions)


def _group_by_scope(scope: pa.ChunkedArray | pa.ListArray) -> tuple[np.ndarray, list[tuple[frozenset[str], int, int]]]:
    """The row order that puts rows with the same labels together, and each group's labels and
    ``[start, end)`` in that order.

    >>> order, groups = _group_by_scope(pa.array([["public"], ["C0B", "C0A"], ["public"], ["C0A", "C0B"]]))
    >>> order.tolist(), [(sorted(labels), start, end) for labels, start, end in groups]
    ([1, 3, 0, 2], [(['C0A', 'C0B'], 0, 2), (['public'], 2, 4)])
    """
    keys = [_LABEL_SEPARATOR.join(sorted(labels or ())) for labels in scope.to_pylist()]
    names = sorted(set(keys))
    code_of = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((code_of[key] for key in keys), dtype=np.int64, count=len(keys))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1)).tolist()
    groups = [(frozenset(filter(None, name.split(_LABEL_SEPARATOR))), bounds[i], bounds[i + 1])
              for i, name in enumerate(names)]
    return order, groups
