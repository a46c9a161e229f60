"""Which rows of an in-memory copy of a table each audience may see.

The in-memory keyword search (:mod:`knowledge.stores.memory_keywords`) applies the access filter
as a pre-filter: only rows whose scope holds a label the audience is allowed are ever ranked. Rows
are found through per-label postings. The in-memory vectors are laid out by scope instead (see
:mod:`knowledge.stores.memory_vectors`). Both keep each audience's answer in an
:class:`AudienceCache`, since the same channels ask again and again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Audiences whose answers are kept per in-memory copy. The largest answer is at most 9 bytes a row
# (visible row positions and a mask): 128 audiences of a 100k-row table cost at most 115 MB.
_CACHED_AUDIENCES = 128
T = TypeVar("T")


class AudienceCache:
    """The last ``size`` audiences' answers, computed once each (thread-safe; a race computes twice).

    >>> cache = AudienceCache(size=1)
    >>> cache.get(frozenset({"public"}), lambda: "computed"), cache.get(frozenset({"public"}), lambda: "again")
    ('computed', 'computed')
    """

    def __init__(self, size: int = _CACHED_AUDIENCES):
        self.size = size
        self._answers: OrderedDict[frozenset[str], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, allowed: frozenset[str], compute: Callable[[], T]) -> T:
        with self._lock:
            if allowed in self._answers:
                self._answers.move_to_end(allowed)
                return self._answers[allowed]
        answer = compute()
        with self._lock:
            self._answers[allowed] = answer
            if len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer


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
        self._cache = AudienceCache()

    def positions(self, allowed: frozenset[str]) -> np.ndarray:
        """Sorted positions of the rows ``allowed`` may see."""
        return self._cache.get(allowed, lambda: self._visible(allowed))[0]

    def mask(self, allowed: frozenset[str]) -> np.ndarray:
        """A boolean per row: may ``allowed`` see it?"""
        return self._cache.get(allowed, lambda: self._visible(allowed))[1]

    def _visible(self, allowed: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.postings[label] for label in allowed if label in self.postings]
        positions = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int32)
        mask = np.zeros(self.size, dtype=bool)
        mask[positions] = True
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
