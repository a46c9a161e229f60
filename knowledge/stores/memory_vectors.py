"""Exact dense search over an in-memory copy of a table's vectors (and its rows, for reading winners).

Up to a few hundred thousand chunks, one matrix-vector product over every vector is faster than
any index a query engine can walk (about 7 ms for 100k × 384 floats on one core: it reads 154 MB,
so memory bandwidth sets the pace) and it is exact: no recall to tune, no small channel an
approximate index could miss. The store keeps one snapshot per table version and answers the
dense half of a search from it; the access filter is applied here as a pre-filter too (see
:mod:`knowledge.stores.visible_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from knowledge.stores.visible_rows import VisibleRows

# Below this share of the table, scoring only the visible rows beats scoring all and masking:
# gathering rows costs about as much per row as the product itself (at 100k × 384, on one core:
# 20% gathered 7.1 ms, the whole table 6.7 ms; 10% gathered 3.3 ms).
_GATHER_BELOW_SHARE = 0.2


def _similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` on the calling thread.

    Not through BLAS: the keyword search, the question encoder and the row fetch run beside it on
    a small machine, and BLAS workers spinning after their part was done took the cores from them
    (that doubled the p95 of the whole query); and OpenBLAS's single-threaded matrix-vector kernel
    ran at half of numpy's own loop on an AMD EPYC (13.9 ms against 6.5 ms at 100k × 384; both
    read the same 154 MB, numpy's at about the speed of a plain sum over it).
    """
    return np.einsum("ij,j->i", matrix, query)


@dataclass
class VectorSnapshot:
    """Chunk IDs, row IDs, vectors, per-label postings and the other columns of one table version.

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
    matrix: np.ndarray  # (rows, dimension) float32
    visible: VisibleRows
    columns: pa.Table  # every column but the vectors and row IDs, row for row
    _by_row_id: np.ndarray  # positions sorted by row ID, to find rows by ID

    @classmethod
    def from_arrow(cls, *, version: int, table: pa.Table) -> VectorSnapshot:
        """From columns ``chunk_id``, ``_rowid``, ``scope`` (list of labels), ``vector`` (fixed size) and
        any others, which :meth:`rows` returns."""
        rows = table.num_rows
        dimension = table.schema.field("vector").type.list_size
        # One copy of the vectors, chunk by chunk, into the matrix (no combined intermediate).
        matrix = np.empty((rows, dimension), dtype=np.float32)
        start = 0
        for chunk in table["vector"].chunks:
            matrix[start:start + len(chunk)] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dimension)
            start += len(chunk)
        row_ids = table["_rowid"].to_numpy()
        return cls(
            version=version,
            row_ids=row_ids,
            matrix=matrix,
            visible=VisibleRows(table["scope"]),
            columns=table.drop_columns(["vector", "_rowid"]).combine_chunks(),  # one chunk: fast takes
            _by_row_id=np.argsort(row_ids, kind="stable"),
        )

    def __len__(self) -> int:
        return len(self.row_ids)

    def nearest(self, vector: np.ndarray, allowed: frozenset[str], *, k: int) -> dict[str, tuple[float, int]]:
        """``{chunk_id: (cosine similarity, row id)}`` of the ``k`` nearest rows ``allowed`` may see."""
        visible = self.visible.positions(allowed)
        if visible.size == 0 or k <= 0:
            return {}
        query = np.asarray(vector, dtype=np.float32)
        if visible.size < _GATHER_BELOW_SHARE * len(self):
            positions = visible
            scores = _similarities(self.matrix[visible], query)
        else:
            positions = None
            scores = np.where(self.visible.mask(allowed), _similarities(self.matrix, query), -np.inf)
        top = min(k, visible.size)
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best], kind="stable")]
        rows = best if positions is None else positions[best]
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
