"""Vector stores behind one interface (:mod:`knowledge.stores.base`)."""

from knowledge.stores.base import SEARCH_MODES, SearchMode, SearchRequest, VectorStore

__all__ = ["SEARCH_MODES", "SearchMode", "SearchRequest", "VectorStore"]
