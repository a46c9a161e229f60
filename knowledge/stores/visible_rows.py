"""Which rows of an in-memory copy of a table each audience may see.

The in-memory keyword search (:mod:`knowledge.stores.memory_keywords`) applies the access filter
as a pre-filter: only rows whose scope holds a label the audience is allowed are ever ranked. Rows
are found through per-label postings; the answer for an audience is kept, since the same channels
ask again and again. (The in-memory vectors are laid out by scope instead, see
:mod:`knowledge.stores.memory_vectors`.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Audiences whose visible rows are kept (positions at most 4 bytes a row plus a 1-byte mask: 128
# audiences of a 100k-row table cost at most 64 MB).
_CACHED_AUDIENCES = 128


class VisibleRows:
    """Per-label postings of one table copy, and per audience the rows it may see.

    >>> rows = VisibleRows(pa.array([["public"], ["C0FINANCE"], ["C0FINANCE", "C0PEOPLE"]]))
    >>> rows.positions(frozenset({"public", "C0PEOPLE"})).tolist()
    [0, 2]
    >>> rows.mask(frozenset({"C0FINANCE"})).tolist()
    [False, True, True]
    """

    def __init__(self, scope: pa.ListArray | pa.ChunkedArray):
        if isinstance(scope, pa.ChunkedArray):
            scope = scope.combine_chunks() if scope.num_chunks else pa.array([], pa.list_(pa.string()))
        self.size = len(scope)
        self.postings = _postings(scope)
        self._cache: OrderedDict[frozenset[str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def positions(self, allowed: frozenset[str]) -> np.ndarray:
        """Sorted positions of the rows ``allowed`` may see."""
        return self._visible(allowed)[0]

    def mask(self, allowed: frozenset[str]) -> np.ndarray:
        """A boolean per row: may ``allowed`` see it?"""
        return self._visible(allowed)[1]

    def _visible(self, allowed: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            cached = self._cache.get(allowed)
            if cached is not None:
                self._cache.move_to_end(allowed)
                return cached
        parts = [self.postings[label] for label in allowed if label in self.postings]
        positions = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int32)
        mask = np.zeros(self.size, dtype=bool)
        mask[positions] = True
        with self._lock:
            self._cache[allowed] = (positions, mask)
            if len(self._cache) > _CACHED_AUDIENCES:
                self._cache.popitem(last=False)
        return positions, mask


def _postings(scope: pa.ListArray) -> dict[str, np.ndarray]:
    """``{label: sorted row positions whose scope holds it}``."""
    labels = pc.list_flatten(scope).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(scope).to_numpy()
    if labels.size == 0:
        return {}
    unique, inverse = np.unique(labels.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
    return {
        str(label): np.unique(parents[order[bounds[i]:bounds[i + 1]]]).astype(np.int32)
        for i, label in enumerate(unique)
    }
