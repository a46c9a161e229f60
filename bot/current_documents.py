"""The index as it is now, for the dataset builder: an answer endorsed last month is learned only
if what it was drawn from is still indexed, still says the same, and may still be learned.

A channel made private, a Slack message deleted, a document narrowed or removed after someone gave
the answer a 👍: the interaction recorded the passages as they were, and without this check the
old text would still reach a dataset that every channel's model learns from.
"""

from __future__ import annotations

from collections.abc import Callable

from knowledge.stores.base import VectorStore

EXCERPT_BREAK = "…"  # the line a passage puts between excerpts of one document (not document text)


class IndexedDocuments:
    """Answers :class:`training.dataset.CurrentDocuments` from a store, reading each document once.

    Built per dataset build: what it reads is a snapshot of that moment. The store is opened only
    when a first passage is asked about (a build with nothing eligible never loads the model).
    """

    def __init__(self, open_store: Callable[[], VectorStore]):
        self._open_store = open_store
        self._scopes: dict[str, tuple[str, ...]] | None = None
        self._texts: dict[str, str] = {}

    def scope_of(self, doc_id: str) -> tuple[str, ...] | None:
        if self._scopes is None:
            self._scopes = {d.doc_id: tuple(d.scope.as_list()) for d in self._open_store().list_documents()}
        return self._scopes.get(doc_id)

    def still_says(self, doc_id: str, text: str) -> bool:
        """Every line of the passage is in the document's chunks now (a passage joins chunks, without
        the words two neighbours share, so each of its lines lies inside one chunk)."""
        if doc_id not in self._texts:
            chunks = sorted(self._open_store().chunks_of(doc_id), key=lambda c: c.position)
            self._texts[doc_id] = "\n".join(c.text for c in chunks)
        current = self._texts[doc_id]
        lines = [line.strip() for line in text.splitlines()]
        return all(line in current for line in lines if line and line != EXCERPT_BREAK)
